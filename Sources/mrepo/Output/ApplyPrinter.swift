import ArgumentParser
import Delta
import Foundation
import Merge
import Repo

/// The output of `revert` and `cherry-pick`.
enum ApplyPrinter {
    static func present(_ r: ApplyResult, verb: String, json: Bool, quiet: Bool, repo: Repository) throws {
        let conflicted: Bool
        if let m = r.merge, case .conflicted = m.status { conflicted = true } else { conflicted = false }
        if json {
            try printJSON(ApplyDocument(commit: OrNull(r.commit?.id.hex), exact: r.exact, conflicted: conflicted,
                                        report: OrNull(r.merge?.report)))
        } else if !quiet {
            if let c = r.commit {
                print("[\(try repo.currentBranch() ?? "detached HEAD") \(c.id.short)] \(c.subject)")
                print(r.exact ? " exact: every changed file and tensor was put in place byte for byte"
                    : " applied as task arithmetic through the merge machinery ('mrepo show --conflicts \(c.id.short)' lists every tensor)")
            } else if conflicted, let m = r.merge {
                let n = m.report.unresolved.count
                print("\(verb) stopped: \(n) tensor\(n == 1 ? "" : "s") could not be combined by task arithmetic:")
                for t in m.report.unresolved.prefix(20) { print("  \(t.name): \(t.conflict ?? "")") }
                if n > 20 { print("  ... and \(n - 20) more ('mrepo status' lists them all)") }
                print("Settle them with 'mrepo resolve GLOB --ours|--theirs|--base|--method M', then 'mrepo \(verb) --continue' (or 'mrepo \(verb) --abort').")
            }
        }
        // A file both HEAD and the change changed keeps HEAD's version: the change to it is not applied.
        if let m = r.merge {
            for path in m.report.filesChangedOnSeveralSides {
                ErrorReporter.warn("\(path) was changed both by the \(verb == "revert" ? "reverted commit" : "picked commit") and since; HEAD's version is kept, so that part of the change is not applied")
            }
        }
        if conflicted { throw ExitCode(1) }
    }
}

/// `revert --json` and `cherry-pick --json`: the new commit, whether the changes applied byte for
/// byte, and the conflict report when they went through task arithmetic.
struct ApplyDocument: Encodable {
    var commit: OrNull<String>
    var exact: Bool
    var conflicted: Bool
    var report: OrNull<ConflictReport>
}
