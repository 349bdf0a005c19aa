import ArgumentParser
import Foundation
import Repo

struct GCCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gc",
        abstract: "Delete commits and objects no branch, tag, HEAD or reflog entry reaches, and leftovers of interrupted commands.",
        discussion: "Stash entries, ORIG_HEAD, remote-tracking branches, every working tree's HEAD and an unfinished merge's commits and objects are always kept. The first bytes of objects a fetch or clone was receiving when it broke off (.mrepo/objects/partial, kept for the next one to continue) are deleted too, and counted with the temporary files. gc first waits for the commands reading the repository (export, diff, status, fsck, a transfer; on mrepo serve, downloads and push sessions), so it never deletes what one is using; new readers may start during the first 10 seconds of that wait (MREPO_GC_GRACE_SECONDS), and after them wait for gc (mrepo serve answers them 503 with Retry-After), so a stream of readers cannot hold gc off for ever.")

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var lock: LockOptions

    @Flag(help: "Forget the reflog first, so commits only it reached are deleted too.")
    var pruneReflog = false

    @Option(name: .customLong("prune-reflog-older-than"), help: ArgumentHelp(
        "Forget only reflog entries older than this age ('90 days', '2 weeks', '1 hour', 'now'; --prune-reflog=AGE is the same), as git's 'reflog expire'.",
        valueName: "age"))
    var reflogAge: String?

    func validate() throws {
        if let reflogAge, Age.seconds(reflogAge) == nil {
            throw ValidationError("'\(reflogAge)': expected an age such as '90 days', '2 weeks', '12 hours' or 'now'")
        }
    }

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() throws {
        let repo = try repository.open()
        let expiry = reflogAge.flatMap(Age.seconds).map { Date().timeIntervalSince1970 - $0 }
        let r = try repo.gc(pruneReflog: pruneReflog || expiry != nil, reflogExpiry: expiry, wait: lock.wait)
        if json {
            try printJSON(GCDocument(r))
        } else if !repository.quiet {
            // Freed bytes are the objects' and the temporary and partial files' together.
            func count(_ n: Int, _ what: String) -> String { "\(n) \(what)\(n == 1 ? "" : "s")" }
            print("removed \(count(r.removedCommits, "commit")), \(count(r.removedObjects, "object")), "
                  + "\(count(r.removedTemporaryFiles, "temporary file")); \(Format.bytes(r.freedBytes)) freed")
        }
    }
}

/// Ages as `gc --prune-reflog=AGE` takes them: `90 days`, `2.weeks`, `12h`, `now`, `all`.
enum Age {
    static func seconds(_ text: String) -> Double? {
        let t = text.lowercased().replacingOccurrences(of: ".", with: " ").replacingOccurrences(of: " ago", with: "")
            .trimmingCharacters(in: .whitespaces)
        if t == "now" || t == "all" { return 0 }
        let digits = t.prefix { $0.isNumber }
        guard let n = Double(digits), n >= 0 else { return nil }
        let unit = t.dropFirst(digits.count).trimmingCharacters(in: .whitespaces)
        let units: [(String, Double)] = [("seconds", 1), ("second", 1), ("s", 1), ("minutes", 60), ("minute", 60), ("min", 60),
                                         ("hours", 3_600), ("hour", 3_600), ("h", 3_600), ("days", 86_400), ("day", 86_400), ("d", 86_400),
                                         ("weeks", 604_800), ("week", 604_800), ("w", 604_800), ("months", 2_592_000), ("month", 2_592_000),
                                         ("years", 31_536_000), ("year", 31_536_000), ("y", 31_536_000)]
        guard let factor = units.first(where: { $0.0 == unit })?.1 else { return nil }
        return n * factor
    }
}
