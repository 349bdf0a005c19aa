import Delta
import Foundation
import Repo

extension CheckoutResult {
    /// "N files written, N removed, N unchanged".
    var filesSummary: String { "\(writtenFiles) \(writtenFiles == 1 ? "file" : "files") written, \(removedFiles) removed, \(unchangedFiles) unchanged" }

    /// What `switch --detach` and `checkout --detach` print.
    func printDetached(json: Bool, quiet: Bool) throws {
        if json { try printJSON(CheckoutDocument(self)) } else if !quiet {
            print("HEAD is now at \(head.commit?.short ?? "") (detached; \(filesSummary))")
        }
    }
}

/// git's warning when HEAD leaves a detached commit that nothing else reaches.
enum LeftBehindWarning {
    /// Warns (on standard error) when HEAD was detached at `before` and has moved, leaving commits
    /// that no branch, tag or other ref reaches.
    static func report(_ repo: Repository, before: Head?) {
        guard case let .detached(old)? = before, let now = try? repo.head(), now.commit != old,
              let left = try? repo.commitsLeftBehind(old), !left.isEmpty else { return }
        let shown = left.prefix(4).map { "\($0.id.short) \(DisplayText.escaping($0.subject))" }.joined(separator: "; ")
        ErrorReporter.warn("leaving \(left.count) commit\(left.count == 1 ? "" : "s") behind that no branch or tag reaches (\(shown)\(left.count > 4 ? "; ..." : ""));"
            + " 'mrepo branch NAME \(old.short)' keeps \(left.count == 1 ? "it" : "them") (the reflog does until 'gc --prune-reflog')")
    }
}
