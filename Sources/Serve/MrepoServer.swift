import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore

/// `mrepo serve`: an HTTP server for every repository under a folder.
public enum MrepoServer {
    /// Runs until SIGINT or SIGTERM, then stops gracefully: it stops accepting connections,
    /// lets running requests finish, and deletes its upload staging folders.
    ///
    /// - Parameter announce: called once the socket is bound, with the URL it listens on (the
    ///   real port when `options.port` is 0).
    public static func run(_ options: ServeOptions, announce: @escaping @Sendable (String) -> Void) async throws {
        let service = try HubService(options: options)
        var logger = Logger(label: "mrepo-serve")
        // Hummingbird logs requests at debug level and errors at error level, never headers, so no
        // token reaches the log; keep it to warnings.
        logger.logLevel = .warning
        let sendTimeout = TimeAmount(options.sendTimeout)
        // Hummingbird's idle timeout closes a connection that sends nothing for this long while it
        // is idle or its request is being read (a stalled upload would keep its push session open);
        // longer than mrepo's client keeps an idle connection (60 s), so it never races its reuse.
        let http1 = HTTP1Channel.Configuration(additionalChannelHandlers: [SendTimeoutHandler(timeout: sendTimeout)],
                                               idleTimeout: .seconds(300))
        let app = Application(
            responder: service,
            server: .http1(configuration: http1),
            configuration: ApplicationConfiguration(address: .hostname(options.host, port: options.port), serverName: "mrepo"),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? options.port
                let host = options.host.contains(":") ? "[\(options.host)]" : options.host
                announce("http://\(host):\(port)")
            },
            logger: logger
        )
        // Closes the sessions of pushes that went silent, also while no request arrives.
        let sweep = Task {
            let interval = min(max(options.pushSessionTimeout / 4, .seconds(1)), .seconds(60))
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                service.pushSessions.expireIdle()
            }
        }
        defer {
            sweep.cancel()
            service.pushSessions.closeAll()
            service.uploads.removeAll()
            service.registry.closeJournals()
        }
        do {
            try await app.runService()
        } catch let error as IOError {
            // NIO's socket errors print as "bind(descriptor:ptr:bytes:): Address already in use) (errno: 98)".
            let why = String(cString: strerror(error.errnoCode))
            throw ServeError.invalidConfiguration("cannot listen on \(options.host):\(options.port): \(why)"
                + (error.errnoCode == EADDRINUSE ? " (another server holds the port; choose another with --port)" : ""))
        }
    }
}
