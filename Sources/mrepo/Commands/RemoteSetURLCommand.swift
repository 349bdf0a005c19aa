import ArgumentParser
import Foundation
import Repo

struct RemoteSetURLCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "set-url", abstract: "Change a remote's URL.")

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var lock: LockOptions

    @Argument(help: ArgumentHelp("Name of the remote.", valueName: "name"))
    var name: String

    @Argument(help: ArgumentHelp("Its new URL.", valueName: "url"))
    var url: String

    func validate() throws {
        try validateRemoteURL(url)
    }

    func run() throws {
        try repository.open().setRemoteURL(name, url: url, wait: lock.wait)
    }
}
