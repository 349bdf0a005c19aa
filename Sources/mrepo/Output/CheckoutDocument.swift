import Delta
import Foundation
import Repo

/// `switch --json` and `checkout --json`.
struct CheckoutDocument: Encodable {
    var branch: OrNull<String>
    var commit: OrNull<String>
    var detached: Bool
    var writtenFiles: Int
    var removedFiles: Int
    var unchangedFiles: Int
    /// What the working tree holds when it is a generated model (`checkout --expert/--view/--fold`).
    var view: String?
    /// The upstream of a branch the command created (`origin/main`), or null.
    var upstream: OrNull<String>

    enum CodingKeys: String, CodingKey {
        case branch, commit, detached, writtenFiles = "written_files", removedFiles = "removed_files"
        case unchangedFiles = "unchanged_files", view, upstream
    }

    init(_ r: CheckoutResult, view: String? = nil, upstream: String? = nil) {
        branch = OrNull(r.head.branchName)
        commit = OrNull(r.head.commit?.hex)
        detached = r.head.branchName == nil
        writtenFiles = r.writtenFiles
        removedFiles = r.removedFiles
        unchangedFiles = r.unchangedFiles
        self.view = view
        self.upstream = OrNull(upstream)
    }
}

/// `switch --orphan --json`.
struct OrphanSwitchDocument: Encodable {
    var branch: String
    var commit = OrNull<String>(nil)
    var orphan = true
}
