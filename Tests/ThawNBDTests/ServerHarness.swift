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

    /// The nbd:// URI of `export` on a TCP server.
    static func uri(_ server: NBDServer, _ export: String = "disk") -> String {
        "nbd://127.0.0.1:\(server.port!)/\(export)"
    }
}
