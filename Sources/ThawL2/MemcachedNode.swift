public import NIOCore
import NIOPosix

/// One memcached server: a few connections opened on first use, each carrying many requests at
/// once (replies come back in order), every request bounded by a timeout. A connection that
/// times out or fails is closed, and the next request opens a new one, so a stopped node costs
/// its callers one timeout each, never a hang.
public actor MemcachedNode {
    public nonisolated let host: String
    public nonisolated let port: Int
    public nonisolated let timeout: Duration
    let group: any EventLoopGroup
    private var channels: [(any Channel)?]
    private var next = 0

    /// - Parameter group: the event loops to run on; nil uses NIO's shared singleton group.
    public init(host: String, port: Int, connections: Int = 2, timeout: Duration = .milliseconds(500),
                group: (any EventLoopGroup)? = nil) {
        self.host = host
        self.port = port
        self.timeout = timeout
        self.group = group ?? MultiThreadedEventLoopGroup.singleton
        channels = Array(repeating: nil, count: max(1, connections))
    }

    public nonisolated var address: String { "\(host):\(port)" }

    /// The timeout as NIO counts time.
    nonisolated var timeAmount: TimeAmount {
        .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000)
    }

    /// The values of `keys` the node holds; misses are absent.
    public func get(_ keys: [String]) async throws -> [String: [UInt8]] {
        guard !keys.isEmpty else { return [:] }
        try Self.check(keys)
        guard case .values(let values) = try await send(.get(keys)) else {
            throw MemcachedError(.malformed, "\(address) answered a get with something else")
        }
        return values
    }

    /// Stores `value` under `key`.
    ///
    /// - Throws: `MemcachedError(.server)` when the node refuses it (over its item size limit,
    ///   out of memory), `.timeout`, `.connection`.
    public func set(_ key: String, _ value: [UInt8], expiry: UInt32 = 0) async throws {
        try Self.check([key])
        let reply = try await send(.set(key: key, value: value, expiry: expiry))
        guard reply == .line("STORED") else {
            throw MemcachedError(.server, "\(address) did not store \(key): \(reply)")
        }
    }

    public func delete(_ key: String) async throws {
        try Self.check([key])
        _ = try await send(.delete(key))
    }

    /// The largest value the node stores (`item_size_max`), from `stats settings`.
    public func itemSizeLimit() async throws -> Int {
        guard case .stats(let stats) = try await send(.statsSettings), let text = stats["item_size_max"], let limit = Int(text) else {
            throw MemcachedError(.malformed, "\(address) did not report item_size_max in stats settings")
        }
        return limit
    }

    /// Closes every connection.
    public func close() async {
        for case let channel? in channels { try? await channel.close() }
        channels = Array(repeating: nil, count: channels.count)
    }

    static func check(_ keys: [String]) throws {
        for key in keys where !MemcachedRequest.isValidKey(key) {
            throw MemcachedError(.invalidRequest, "'\(key.prefix(60))' is not a valid memcached key")
        }
    }

    func send(_ request: MemcachedRequest) async throws -> MemcachedResponse {
        let channel = try await connection()
        let promise = channel.eventLoop.makePromise(of: MemcachedResponse.self)
        let address = self.address
        let limit = timeout
        let deadline = channel.eventLoop.scheduleTask(in: timeAmount) {
            // Replies are matched by order: after a lost one the connection cannot be trusted.
            promise.fail(MemcachedError(.timeout, "\(address) did not answer within \(limit)"))
            channel.close(promise: nil)
        }
        promise.futureResult.whenComplete { _ in deadline.cancel() }
        channel.writeAndFlush(MemcachedCommand(request: request, promise: promise), promise: nil)
        return try await promise.futureResult.get()
    }

    /// A live connection, round robin, opening one where there is none.
    func connection() async throws -> any Channel {
        let slot = next
        next = (next + 1) % channels.count
        if let channel = channels[slot], channel.isActive { return channel }
        do {
            let channel = try await ClientBootstrap(group: group)
                .connectTimeout(timeAmount)
                .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(MemcachedHandler(address: "\(self.host):\(self.port)"))
                    }
                }
                .connect(host: host, port: port).get()
            channels[slot] = channel
            return channel
        } catch {
            throw MemcachedError(.connection, "cannot connect to memcached at \(address): \(error)")
        }
    }
}

/// A request and the promise its reply fulfils, as one pipeline message.
struct MemcachedCommand: Sendable {
    var request: MemcachedRequest
    var promise: EventLoopPromise<MemcachedResponse>
}

/// Encodes requests, and parses replies in order for the requests waiting on them.
final class MemcachedHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = MemcachedCommand
    typealias OutboundOut = ByteBuffer

    let address: String
    private var waiting = CircularBuffer<(MemcachedParser.Expectation, EventLoopPromise<MemcachedResponse>)>()
    private var received: ByteBuffer?

    init(address: String) { self.address = address }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let command = unwrapOutboundIn(data)
        var buffer = context.channel.allocator.buffer(capacity: 64)
        command.request.encode(into: &buffer)
        waiting.append((command.request.expects, command.promise))
        context.write(wrapOutboundOut(buffer), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if received == nil { received = incoming } else { received!.writeBuffer(&incoming) }
        while let (expectation, promise) = waiting.first, received != nil {
            do {
                guard let reply = try MemcachedParser.parse(&received!, expecting: expectation) else { break }
                waiting.removeFirst()
                promise.succeed(reply)
            } catch let error as MemcachedError where error.kind == .server {
                waiting.removeFirst()
                promise.fail(error)
            } catch {
                fail(everything: MemcachedError(.malformed, "\(address): \(error)"))
                context.close(promise: nil)
                return
            }
        }
        if received?.readableBytes == 0 { received = nil }
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(everything: MemcachedError(.connection, "the connection to \(address) closed"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(everything: MemcachedError(.connection, "the connection to \(address) failed: \(error)"))
        context.close(promise: nil)
    }

    private func fail(everything error: MemcachedError) {
        while let (_, promise) = waiting.popFirst() { promise.fail(error) }
    }
}
