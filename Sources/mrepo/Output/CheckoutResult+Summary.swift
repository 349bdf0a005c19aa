import Foundation
import Repo

extension CheckoutResult {
    /// "N files written, N removed, N unchanged".
    var filesSummary: String { "\(writtenFiles) files written, \(removedFiles) removed, \(unchangedFiles) unchanged" }

    /// What `switch --detach` and `checkout --detach` print.
    func printDetached(json: Bool, quiet: Bool) throws {
        if json { try printJSON(CheckoutDocument(self)) } else if !quiet {
            print("HEAD is now at \(head.commit?.short ?? "") (detached; \(filesSummary))")
        }
    }
}
