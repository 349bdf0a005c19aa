import Delta
import Foundation
import HTTPTypes
import Hummingbird
import Repo

/// The commit listing of the Hub API (`HfApi.list_repo_commits`).
extension HubService {
    /// Commits per page of the listing.
    static let commitPageSize = 50

    /// `GET /api/models/{ns}/{name}/commits/{rev}?cursor=&expand[]=formatted`: the commits `rev`
    /// reaches, newest first (as `mrepo log REV` lists them), in pages of ``commitPageSize``, the next
    /// page named by a `Link: <…>; rel="next"` header. Each is `{"id", "authors": [{"user"}], "date",
    /// "title", "message"}`: the id as the Hub shows ids (40 hex digits), the author's name, the
    /// message's first line and the rest (after the blank line), and with `expand[]=formatted` the same
    /// two texts HTML-escaped under `formatted`.
    func commits(_ repo: Repository, lease: ReaderLease, revision: String, query: [String: String], request: Request) throws -> Response {
        defer { lease.release() }
        // A repository with no commit yet (made by create_repo) has an empty history, as the Hub says.
        if try isUnbornDefault(repo, revision) {
            return Responses.json(.array([]))
        }
        let start = try pageStart(query)
        let pageSize = max(1, min(HubService.commitPageSize, Int(query["limit"] ?? "") ?? HubService.commitPageSize))
        let listed = try repo.log(from: [try resolve(repo, revision)], limit: start + pageSize + 1)
        let page = listed.dropFirst(start).prefix(pageSize)
        let formatted = query["expand[]"] == "formatted" || query["expand"] == "formatted"
        let out = page.map { commit -> JSONValue in
            let (title, body) = HubService.titleAndBody(commit.message)
            var members = [
                JSONMember("id", .string(HubIDs.commit(commit.id))),
                JSONMember("authors", .array([.object([JSONMember("user", .string(HubService.authorName(commit.author)))])])),
                JSONMember("date", .string(HubService.isoDate(commit.date))),
                JSONMember("title", .string(title)),
                JSONMember("message", .string(body)),
            ]
            if formatted {
                members.append(JSONMember("formatted", .object([JSONMember("title", .string(HubService.escapeHTML(title))),
                                                                JSONMember("message", .string(HubService.escapeHTML(body)))])))
            }
            return .object(members)
        }
        return Responses.json(.array(out), headers: listed.count > start + pageSize ? nextPage(request, query, cursor: start + pageSize) : [:])
    }

    /// A message's first line, and what follows the blank line after it (git's subject and body).
    static func titleAndBody(_ message: String) -> (String, String) {
        let lines = message.split(separator: "\n", omittingEmptySubsequences: false)
        let title = lines.first.map(String.init) ?? ""
        let body = lines.dropFirst().drop { $0.trimmingCharacters(in: .whitespaces).isEmpty }.joined(separator: "\n")
        return (title, body.trimmingCharacters(in: .newlines))
    }

    /// The name of `Name <email>`.
    static func authorName(_ author: String) -> String {
        guard let open = author.firstIndex(of: "<") else { return author }
        let name = author[..<open].trimmingCharacters(in: .whitespaces)
        return name.isEmpty ? author : name
    }

    static func escapeHTML(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
