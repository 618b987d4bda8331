import NIOCore
import NIOPosix

/// A client that speaks raw bytes to the server, to check exact replies and to misbehave.
struct RawConnection {
    typealias Channel = NIOAsyncChannel<ByteBuffer, ByteBuffer>

    var inbound: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    var buffered = ByteBuffer()

    /// Connects to the server on loopback `port` and runs `body` with the connection.
    static func with<T: Sendable>(port: Int, _ body: (inout RawConnection) async throws -> T) async throws -> T {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture { try Channel(wrappingChannelSynchronously: channel) }
            }
        return try await channel.executeThenClose { inbound, outbound in
            var connection = RawConnection(inbound: inbound.makeAsyncIterator(), outbound: outbound)
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
}
