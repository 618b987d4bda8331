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
    /// Set by `drain`: connections whose input ends let their reads in flight finish.
    let draining = DrainFlag()
    /// The channels of open connections, so `drain` can end their input.
    let openChannels = Mutex<[ObjectIdentifier: any Channel]>([:])

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
            // `drain` shuts a connection's input; without this NIO would close the whole
            // connection at that end of input, before the reads in flight are answered.
            .childChannelOption(.allowRemoteHalfClosure, value: true)
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

    /// Stops serving gracefully: the listener closes, every connection stops reading requests
    /// (its input is shut), reads already received are answered, and then it closes; `run()`
    /// returns when all have. Connections still open after `timeout` (a read stuck on the
    /// origin) are closed outright.
    public func drain(timeout: Duration) {
        guard draining.set(deadline: .now + timeout) else { return }
        logger.info("NBD server draining", metadata: ["connections": "\(connectionCount.load(ordering: .relaxed))"])
        listener.channel.close(promise: nil)
        for channel in openChannels.withLock({ Array($0.values) }) {
            channel.close(mode: .input, promise: nil)
        }
    }

    /// Serves connections until the calling task is cancelled, then closes the listener and
    /// every connection (reads in flight are cancelled) and returns; or, after `drain`, until
    /// every connection has finished. Call it once per server.
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
                                                   draining: draining, logger: logger)
                    let id = ObjectIdentifier(channel.channel)
                    openChannels.withLock { $0[id] = channel.channel }
                    if draining.isSet { channel.channel.close(mode: .input, promise: nil) }
                    group.addTask {
                        await connection.serve()
                        self.openChannels.withLock { _ = $0.removeValue(forKey: id) }
                        self.connectionCount.subtract(1, ordering: .relaxed)
                    }
                }
            }
            // Draining: the connections end by themselves once their reads are answered; those
            // still open at the deadline are cancelled.
            if let deadline = draining.deadline {
                while connectionCount.load(ordering: .relaxed) > 0, ContinuousClock.now < deadline {
                    try? await Task.sleep(for: .milliseconds(20))
                }
            }
            group.cancelAll()
        }
        logger.info("NBD server stopped", metadata: ["address": "\(address)"])
    }
}

/// Set once by `drain`, with the time by which connections must be gone; read by every connection.
final class DrainFlag: Sendable {
    private let state = Mutex<ContinuousClock.Instant?>(nil)

    var isSet: Bool { deadline != nil }
    var deadline: ContinuousClock.Instant? { state.withLock { $0 } }

    /// Sets the flag; false when it was set already.
    func set(deadline: ContinuousClock.Instant) -> Bool {
        state.withLock { current in
            guard current == nil else { return false }
            current = deadline
            return true
        }
    }
}
