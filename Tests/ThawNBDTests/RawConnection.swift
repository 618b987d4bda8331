import NIOCore
import NIOPosix
import Synchronization

/// A client that speaks raw bytes to the server, to check exact replies and to misbehave.
struct RawConnection {
    typealias Channel = NIOAsyncChannel<ByteBuffer, ByteBuffer>

    var inbound: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    /// The socket itself, so a test can give up on a server that never closes.
    let socket: any NIOCore.Channel
    var buffered = ByteBuffer()

    /// Connects to the server on loopback `port` and runs `body` with the connection.
    static func with<T: Sendable>(port: Int, _ body: (inout RawConnection) async throws -> T) async throws -> T {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture { try Channel(wrappingChannelSynchronously: channel) }
            }
        return try await channel.executeThenClose { inbound, outbound in
            var connection = RawConnection(inbound: inbound.makeAsyncIterator(), outbound: outbound, socket: channel.channel)
            return try await body(&connection)
        }
    }

    mutating func send(_ bytes: [UInt8]) async throws {
        try await outbound.write(ByteBuffer(bytes: bytes))
    }

    /// The next `count` bytes, or nil when the server closes first.
    mutating func receive(_ count: Int) async throws -> [UInt8]? {
        while buffered.readableBytes < count {
            guard var buffer = try await inbound.next() else { return nil }
            buffered.discardReadBytes()
            buffered.writeBuffer(&buffer)
        }
        return buffered.readBytes(length: count)
    }

    /// Reads until the server closes; returns what came before. A reset counts as closed.
    mutating func drainUntilClosed() async -> [UInt8] {
        do {
            while var buffer = try await inbound.next() { buffered.writeBuffer(&buffer) }
        } catch {}
        defer { buffered.clear() }
        return Array(buffered.readableBytesView)
    }

    /// Whether the server closes the connection within `limit`. Past it the client closes the
    /// socket itself and the answer is false, so a server that never cuts a client fails the
    /// test instead of hanging it. The limit is a liveness bound, far above the server's own
    /// timeouts, since a loaded machine may hold its tasks up for seconds.
    mutating func serverCloses(within limit: TimeAmount) async -> Bool {
        let gaveUp = GaveUp()
        let socket = self.socket
        let timer = socket.eventLoop.scheduleTask(in: limit) {
            gaveUp.flag.store(true, ordering: .relaxed)
            socket.close(promise: nil)
        }
        _ = await drainUntilClosed()
        timer.cancel()
        return !gaveUp.flag.load(ordering: .relaxed)
    }
}

/// Set once the client stops waiting for the server to close.
private final class GaveUp: Sendable {
    let flag = Atomic<Bool>(false)
}
