import ArgumentParser
import Foundation
import Repo

struct RemoteRenameCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rename", abstract: "Rename a remote (its remote-tracking refs follow).")

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var lock: LockOptions

    @Argument(help: ArgumentHelp("Current name.", valueName: "old"))
    var old: String

    @Argument(help: ArgumentHelp("New name.", valueName: "new"))
    var new: String

    func run() throws {
        try repository.open().renameRemote(old, to: new, wait: lock.wait)
    }
}
