import Delta
import Foundation
import Repo

/// `--json` of switch and checkout.
enum CheckoutJSON {
    static func make(_ r: CheckoutResult) -> JSONValue {
        .obj(["branch": .opt(r.head.branchName), "commit": .opt(r.head.commit?.hex), "detached": .bool(r.head.branchName == nil),
              "written_files": .int(r.writtenFiles), "removed_files": .int(r.removedFiles), "unchanged_files": .int(r.unchangedFiles)])
    }
}
