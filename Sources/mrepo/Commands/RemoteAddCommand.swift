import ArgumentParser
import Foundation
import Repo

struct RemoteAddCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "add", abstract: "Add a remote.")

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var lock: LockOptions

    @Argument(help: ArgumentHelp("Name of the remote (origin, upstream, ...).", valueName: "name"))
    var name: String

    @Argument(help: ArgumentHelp("Its URL: a path, file://, http(s):// or s3://.", valueName: "url"))
    var url: String

    func validate() throws {
        try validateRemoteURL(url)
    }

    func run() throws {
        try repository.open().addRemote(name, url: url, wait: lock.wait)
    }
}
