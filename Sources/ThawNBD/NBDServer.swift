import Glibc
public import Logging
import NIOCore
import NIOPosix
import Synchronization

/// An NBD server (`doc/proto.md` of the NBD project) that presents read-only exports as block
/// devices to qemu, the kernel's nbd client or libnbd's tools.
///
/// `bind` opens the listening socket, so the port is known before any client connects; `run()`
/// then serves every connection at once, each in its own child task, until the task running it
/// is cancelled, and closes the listener and all connections on the way out. One connection's
/// failures — a broken or hostile client, a handshake that never ends, a read that throws —
/// stay with that connection.
public final class NBDServer: Sendable {
    typealias Connection = NIOAsyncChannel<ByteBuffer, ByteBuffer>

    /// Where the server listens, with the port it was actually given.
    public let address: NBDServerAddress
    let listener: NIOAsyncChannel<Connection, Never>
    let catalog: any NBDExportCatalog
    let configuration: NBDServerConfiguration
    let logger: Logger
    /// Connections being served now, against `NBDServerConfiguration.maxConnections`.
    let connectionCount = Atomic<Int>(0)

    /// The TCP port listened on, or nil on a Unix socket.
    public var port: Int? {
        if case .tcp(_, let port) = address { port } else { nil }
    }

    init(address: NBDServerAddress, listener: NIOAsyncChannel<Connection, Never>, catalog: any NBDExportCatalog,
         configuration: NBDServerConfiguration, logger: Logger) {
        self.address = address
        self.listener = listener
        self.catalog = catalog
        self.configuration = configuration
        self.logger = logger
    }

    /// Opens the listening socket at `address`. Call `run()` to serve: the socket closes only
    /// when `run()` returns.
    public static func bind(_ address: NBDServerAddress = .tcp(), catalog: any NBDExportCatalog,
                            configuration: NBDServerConfiguration = NBDServerConfiguration(),
                            logger: Logger = Logger(label: "thaw.nbd")) async throws -> NBDServer {
        var bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: configuration.backlog)
        let listener: NIOAsyncChannel<Connection, Never>
        let bound: NBDServerAddress
        switch address {
        case .tcp(let host, let port):
            bootstrap = bootstrap
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            listener = try await bootstrap.bind(host: host, port: port, childChannelInitializer: wrap)
            bound = .tcp(host: host, port: listener.channel.localAddress?.port ?? port)
        case .unix(let path):
            listener = try await bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true,
                                                childChannelInitializer: wrap)
            bound = address
        }
        logger.info("NBD server listening", metadata: ["address": "\(bound)"])
        return NBDServer(address: bound, listener: listener, catalog: catalog, configuration: configuration, logger: logger)
    }

    @Sendable static func wrap(_ channel: any Channel) -> EventLoopFuture<Connection> {
        channel.eventLoop.makeCompletedFuture {
            try Connection(wrappingChannelSynchronously: channel)
        }
    }

    /// Serves connections until the calling task is cancelled, then closes the listener and
    /// every connection (reads in flight are cancelled) and returns. Call it once per server.
    ///
    /// - Throws: only when the listening socket itself fails.
    public func run() async throws {
        defer {
            if case .unix(let path) = address { unlink(path) }
        }
        try await withThrowingDiscardingTaskGroup { group in
            try await listener.executeThenClose { inbound in
                for try await channel in inbound {
                    guard connectionCount.add(1, ordering: .relaxed).newValue <= configuration.maxConnections else {
                        connectionCount.subtract(1, ordering: .relaxed)
                        logger.warning("refusing a connection: \(configuration.maxConnections) already open")
                        group.addTask { try? await channel.executeThenClose { _, _ in } }
                        continue
                    }
                    let connection = NBDConnection(channel: channel, catalog: catalog, configuration: configuration,
                                                   logger: logger)
                    group.addTask {
                        await connection.serve()
                        self.connectionCount.subtract(1, ordering: .relaxed)
                    }
                }
            }
            group.cancelAll()
        }
        logger.info("NBD server stopped", metadata: ["address": "\(address)"])
    }
}
