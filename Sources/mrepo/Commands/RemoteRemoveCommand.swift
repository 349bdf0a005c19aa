import ArgumentParser
import Foundation
import Repo

struct RemoteRemoveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "remove", abstract: "Remove a remote and its remote-tracking refs.", aliases: ["rm"])

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var lock: LockOptions

    @Argument(help: ArgumentHelp("Name of the remote.", valueName: "name"))
    var name: String

    @Flag(name: .shortAndLong, help: "Remove the remote a lazy clone fetches its missing object files from, although some are still missing (they stay missing until a remote that has them is fetched with --lazy).")
    var force = false

    func run() throws {
        try repository.open().removeRemote(name, force: force, wait: lock.wait)
    }
}
