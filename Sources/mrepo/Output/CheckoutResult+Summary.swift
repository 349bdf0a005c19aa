import Foundation
import Repo

extension CheckoutResult {
    /// "N files written, N removed, N unchanged".
    var filesSummary: String { "\(writtenFiles) files written, \(removedFiles) removed, \(unchangedFiles) unchanged" }
}
