import Foundation
import Logging
import ThawNBD
import ThawTestSupport

/// Runs a server for the length of a test, and real client tools beside it.
enum Harness {
    static var logger: Logger {
        var logger = Logger(label: "thaw.nbd.test")
        logger.logLevel = .error
        return logger
    }

    /// Binds a server, runs it while `body` runs, then cancels it and waits until it stopped.
    static func withServer<T: Sendable>(_ address: NBDServerAddress = .tcp(), catalog: any NBDExportCatalog = TestImage.catalog,
                                        configuration: NBDServerConfiguration = NBDServerConfiguration(),
                                        _ body: (NBDServer) async throws -> T) async throws -> T {
        let server = try await NBDServer.bind(address, catalog: catalog, configuration: configuration, logger: logger)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.run() }
            defer { group.cancelAll() }
            return try await body(server)
        }
    }

    /// Runs a command on a thread of its own, so waiting for it never holds one of the few
    /// threads the server's tasks run on.
    static func run(_ tool: String, _ arguments: [String]) async throws -> TestSupport.CommandResult {
        try await withCheckedThrowingContinuation { continuation in
            Thread {
                continuation.resume(with: Result { try TestSupport.run(tool, arguments, check: false) })
            }.start()
        }
    }

    /// The nbd:// URI of `export` on a TCP server.
    static func uri(_ server: NBDServer, _ export: String = "disk") -> String {
        "nbd://127.0.0.1:\(server.port!)/\(export)"
    }

    static func contentsEqual(_ a: String, _ b: String) throws -> Bool {
        try Data(contentsOf: URL(fileURLWithPath: a)) == Data(contentsOf: URL(fileURLWithPath: b))
    }
}
