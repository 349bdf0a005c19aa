import Delta
import Foundation

extension Repository {
    /// The branches and tags of a remote, sorted by name (`ls-remote`): `remote` is the name of a
    /// remote of this repository or a URL.
    public func listRemoteRefs(_ remote: String) async throws -> [RemoteRef] {
        let url = try history.remote(named: remote)?.url ?? remote
        return try await Repository.listRemoteRefs(url: url, environment: transportEnvironment)
    }

    /// The branches and tags of the repository at `url` (no local repository needed). A word that
    /// is neither a URL nor a folder is taken as a remote's name that does not exist (as `origin`
    /// in a repository without remotes), and said so.
    public static func listRemoteRefs(url: String, environment: [String: String] = ProcessInfo.processInfo.environment) async throws -> [RemoteRef] {
        if !url.contains("/"), !url.contains(":"), !FileManager.default.fileExists(atPath: url) {
            throw RepoError.invalidArgument("no remote named '\(url)' here, and no folder or URL of that name (see 'mrepo remote -v')")
        }
        let refs = try await Transports.open(url, environment: environment).listRefs()
        return refs.values.sorted { ($0.kind == .tag ? 1 : 0, $0.name) < ($1.kind == .tag ? 1 : 0, $1.name) }
    }
}
