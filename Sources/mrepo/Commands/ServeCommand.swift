import ArgumentParser
import Foundation
import Repo
import Serve
import Synchronization

struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve every repository under a folder over HTTP: the Hugging Face Hub API (and mrepo's own protocol).",
        discussion: """
            A repository's id is its path below ROOT (team/minilm). With HF_ENDPOINT=http://HOST:PORT, \
            huggingface_hub and transformers download any branch, tag or commit, and HfApi's create_branch, \
            create_tag and upload_folder (with HF_HUB_DISABLE_XET=1) commit to it. Without --tokens the \
            server is read-only to anyone who can reach the address. Stops on SIGINT or SIGTERM. See \
            docs/serving.md.
            """)

    @Argument(help: ArgumentHelp("The folder holding the repositories (NAMESPACE/NAME below it). The default is the current folder.", valueName: "root"))
    var root: String?

    @Option(help: ArgumentHelp("The address to listen on. The default is loopback only.", valueName: "host"))
    var host = "127.0.0.1"

    @Option(help: ArgumentHelp("The port to listen on; 0 picks a free one (printed on start).", valueName: "port"))
    var port = 8080

    @Option(help: ArgumentHelp("A file of 'TOKEN read|write' lines (a token: 8 or more printable ASCII characters); clients send 'Authorization: Bearer TOKEN'. Without it, read-only to anyone.", valueName: "file"))
    var tokens: String?

    @Option(help: ArgumentHelp("The largest single upload accepted, in MiB.", valueName: "mib"))
    var maxUploadMib = 65536

    @Option(help: ArgumentHelp("Disconnect a client that takes no bytes of an answer for this many seconds (a stalled download holds off gc).", valueName: "seconds"))
    var sendTimeout = 60

    @Option(help: ArgumentHelp("Close a push session that has had no request for this many seconds (a push holds off gc until its session closes).", valueName: "seconds"))
    var pushSessionTimeout = 600

    @Option(help: ArgumentHelp("The most pushes in progress at once; more are answered 503.", valueName: "n"))
    var maxPushSessions = 64

    @Option(help: ArgumentHelp("How long a download waits for a gc running on its repository before it is answered 503 GCRunning with Retry-After (mrepo clients wait and retry; 0 answers at once).", valueName: "seconds"))
    var gcWait = 30

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be between 0 and 65535") }
        guard maxUploadMib > 0 else { throw ValidationError("--max-upload-mib must be positive") }
        guard sendTimeout > 0 else { throw ValidationError("--send-timeout must be positive") }
        guard pushSessionTimeout > 0 else { throw ValidationError("--push-session-timeout must be positive") }
        guard maxPushSessions > 0 else { throw ValidationError("--max-push-sessions must be positive") }
        guard gcWait >= 0 else { throw ValidationError("--gc-wait must be 0 or more") }
    }

    func run() throws {
        let folder = root ?? FileManager.default.currentDirectoryPath
        let store: TokenStore?
        do {
            store = try tokens.map { try TokenStore.load(path: $0) }
        } catch let error as ServeError {
            throw RepoError.invalidArgument(error.description)
        }
        let options = ServeOptions(root: folder, host: host, port: port, tokens: store, maxUploadBytes: maxUploadMib << 20,
                                   sendTimeout: .seconds(sendTimeout), pushSessionTimeout: .seconds(pushSessionTimeout),
                                   maxPushSessions: maxPushSessions, gcWait: .seconds(gcWait))
        let access = store.map { "\($0.count) token\($0.count == 1 ? "" : "s")" } ?? "read-only, no tokens"
        let outcome = ServeOutcome()
        let done = DispatchSemaphore(value: 0)
        Task {
            do {
                try await MrepoServer.run(options) { url in
                    // Unbuffered: scripts wait for this line to learn the port.
                    FileHandle.standardOutput.write(Data("mrepo serve: listening on \(url) (root \(folder), \(access))\n".utf8))
                }
            } catch {
                outcome.set(error)
            }
            done.signal()
        }
        done.wait()
        if let error = outcome.error {
            if let serve = error as? ServeError { throw RepoError.invalidArgument(serve.description) }
            throw RepoError.failed("serve: \(error)")
        }
    }
}

/// The error the server stopped with, handed from its task to the command.
final class ServeOutcome: Sendable {
    private let stored = Mutex<(any Error)?>(nil)
    func set(_ error: any Error) { stored.withLock { $0 = error } }
    var error: (any Error)? { stored.withLock { $0 } }
}
