import ArgumentParser
import Foundation
import Repo

struct RemoteRemoveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "remove", abstract: "Remove a remote and its remote-tracking refs.", aliases: ["rm"])

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var lock: LockOptions

    @Argument(help: ArgumentHelp("Name of the remote.", valueName: "name"))
    var name: String

    func run() throws {
        try repository.open().removeRemote(name, wait: lock.wait)
    }
}
