import Delta
import Merge

/// A typed member of a commit's `extra` object (docs/format.md §3.7): `lossy`, `merge`, `rmm`,
/// `adapter`.
///
/// `extra` itself stays a ``JSONValue`` because its byte spelling is hashed into the commit id;
/// the members are read and written through these `Codable` types, which encode their members in
/// the order the format lists them, so a record written today hashes exactly as before.
public protocol CommitExtraRecord: Codable, Sendable {
    /// The member's name in `extra`.
    static var member: String { get }
}

extension CommitExtraRecord {
    /// The member of `extra` holding this record.
    func jsonMember() throws -> JSONMember {
        do {
            return JSONMember(Self.member, try JSONValueCoding.encode(self))
        } catch {
            throw RepoError.failed("cannot encode the \(Self.member) record: \(error)")
        }
    }
}

extension Commit {
    /// The record `T` of this commit, or nil when `extra` has no such member.
    ///
    /// - Throws: ``RepoError/corruptRecord(_:problem:)`` when the member is there but does not
    ///   decode: a damaged record never reads as absent.
    public func record<T: CommitExtraRecord>(_ type: T.Type) throws -> T? {
        guard let json = extra[T.member] else { return nil }
        do {
            return try JSONValueCoding.decode(T.self, from: json)
        } catch {
            throw RepoError.corruptRecord("the \(T.member) record of commit \(id.short)", problem: StoredRecord.problem(error))
        }
    }
}
