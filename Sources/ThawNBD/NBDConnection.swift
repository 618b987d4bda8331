import Logging
import NIOCore
import ThawNBDProtocol

/// One client: the handshake, then its requests until it disconnects or breaks the protocol.
///
/// Reads run as child tasks, up to the configured count and bytes at once, and each writes its
/// whole reply (header and data) as one message, so replies of concurrent reads never
/// interleave. Replies may leave in any order, which NBD allows: the cookie pairs them.
struct NBDConnection: Sendable {
    typealias Inbound = NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    typealias Outbound = NIOAsyncChannelOutboundWriter<ByteBuffer>

    /// The export a handshake chose, and what the client sent after it.
    struct Chosen {
        var export: any NBDExport
        var size: UInt64
        var name: String
        var leftover: [UInt8]
    }

    let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
    let catalog: any NBDExportCatalog
    let configuration: NBDServerConfiguration
    let draining: DrainFlag
    var logger: Logger

    init(channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>, catalog: any NBDExportCatalog,
         configuration: NBDServerConfiguration, draining: DrainFlag, logger: Logger) {
        self.channel = channel
        self.catalog = catalog
        self.configuration = configuration
        self.draining = draining
        self.logger = logger
        self.logger[metadataKey: "client"] = "\(channel.channel.remoteAddress.map { "\($0)" } ?? "unknown")"
    }

    /// Serves the client until it leaves; never throws, since nothing about one client concerns
    /// the server.
    func serve() async {
        do {
            try await channel.executeThenClose { inbound, outbound in
                var input = inbound.makeAsyncIterator()
                guard let chosen = try await handshake(&input, outbound) else { return }
                logger.debug("transmission started", metadata: ["export": "\(chosen.name)", "size": "\(chosen.size)"])
                try await transmit(chosen, &input, outbound)
            }
            logger.debug("client disconnected")
        } catch let error as NBDProtocolError {
            logger.notice("closing connection: \(error)")
        } catch is CancellationError {
            logger.debug("connection closed by server shutdown")
        } catch {
            logger.debug("connection ended: \(error)")
        }
    }

    /// Runs the handshake under the configured deadline; nil when the client aborted, left or
    /// ran out of time.
    func handshake(_ input: inout Inbound, _ outbound: Outbound) async throws -> Chosen? {
        let channel = channel.channel
        let timeout = configuration.handshakeTimeout
        let logger = logger
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await Task.sleep(for: timeout)
                logger.notice("closing connection: no handshake within \(timeout)")
                channel.close(promise: nil)
            }
            defer { group.cancelAll() }
            return try await negotiate(&input, outbound)
        }
    }

    func negotiate(_ input: inout Inbound, _ outbound: Outbound) async throws -> Chosen? {
        var machine = NBDHandshake(limits: configuration.limits)
        var candidate: (any NBDExport)?
        while true {
            switch try machine.next() {
            case .needMoreBytes:
                guard let buffer = try await input.next() else { return nil }
                machine.receive(buffer.readableBytesView)
            case .send(let bytes):
                try await outbound.write(ByteBuffer(bytes: bytes))
            case .lookUpExport(let name):
                candidate = await catalog.export(named: name)
                machine.resolveExport(candidate.map {
                    NBDExportDescription(name: name, size: $0.size, description: $0.exportDescription)
                })
            case .listExports:
                machine.resolveExportList(await catalog.exportNames())
            case .startTransmission(let description):
                guard let candidate else { preconditionFailure("transmission started without an export") }
                return Chosen(export: candidate, size: description.size, name: description.name,
                              leftover: machine.takeRemainingBytes())
            case .abort:
                logger.debug("client aborted the handshake")
                return nil
            }
        }
    }

    /// Serves requests until `NBD_CMD_DISC` (after which the reads in flight finish), the end of
    /// input or a protocol error (after which they are cancelled; when the server drains, the
    /// end of input is its doing, and the reads in flight finish).
    func transmit(_ chosen: Chosen, _ input: inout Inbound, _ outbound: Outbound) async throws {
        var parser = NBDRequestParser(exportSize: chosen.size, limits: configuration.limits)
        parser.receive(chosen.leftover)
        let export = chosen.export
        let logger = logger
        try await withThrowingTaskGroup(of: Int.self) { group in
            var readsInFlight = 0
            var bytesInFlight = 0
            while true {
                let request: NBDRequest?
                do {
                    request = try parser.next()
                } catch {
                    group.cancelAll()
                    throw error
                }
                switch request {
                case nil:
                    guard let buffer = try await input.next() else {
                        if draining.isSet {
                            // The server shut our input to drain: answer what was asked.
                            try await group.waitForAll()
                        } else {
                            // The client is gone: nobody will read the replies.
                            group.cancelAll()
                        }
                        return
                    }
                    parser.receive(buffer.readableBytesView)
                case .disconnect:
                    try await group.waitForAll()
                    return
                case .refuse(let cookie, let error):
                    try await outbound.write(ByteBuffer(bytes: NBDSimpleReply.header(cookie: cookie, error: error)))
                case .read(let cookie, let offset, let length):
                    while readsInFlight >= configuration.maxReadsInFlight
                        || (readsInFlight > 0 && bytesInFlight + length > configuration.maxBytesInFlight) {
                        guard let released = try await group.next() else { break }
                        readsInFlight -= 1
                        bytesInFlight -= released
                    }
                    readsInFlight += 1
                    bytesInFlight += length
                    group.addTask {
                        try await Self.serveRead(export, cookie: cookie, offset: offset, length: length,
                                                 outbound: outbound, logger: logger)
                        return length
                    }
                }
            }
        }
    }

    /// Reads and replies; a read that throws, or returns the wrong number of bytes, is answered
    /// with `NBD_EIO` and the connection goes on.
    static func serveRead(_ export: any NBDExport, cookie: UInt64, offset: UInt64, length: Int,
                          outbound: Outbound, logger: Logger) async throws {
        var reply = ByteBuffer()
        do {
            reply.reserveCapacity(NBDSimpleReply.headerSize + length)
            reply.writeBytes(NBDSimpleReply.header(cookie: cookie))
            try await export.read(offset: offset, length: length, into: &reply)
            let returned = reply.readableBytes - NBDSimpleReply.headerSize
            guard returned == length else {
                throw WrongReadLength(offset: offset, asked: length, returned: returned)
            }
        } catch {
            try Task.checkCancellation()
            logger.warning("read failed, replying NBD_EIO", metadata: [
                "offset": "\(offset)", "length": "\(length)", "error": "\(error)",
            ])
            reply = ByteBuffer(bytes: NBDSimpleReply.header(cookie: cookie, error: .io))
        }
        try await outbound.write(reply)
    }
}

/// An export returned a different number of bytes than a read asked for; sending them would
/// put the client out of step with the stream, so the read fails instead.
struct WrongReadLength: Error, CustomStringConvertible {
    var offset: UInt64
    var asked: Int
    var returned: Int

    var description: String { "a read of \(asked) bytes at \(offset) returned \(returned) bytes" }
}
