import Foundation
import Testing
import ThawNBD
import ThawTestSupport

/// The server byte by byte from a raw socket: pipelined reads answered by cookie, refusals that
/// keep the connection, and clients that misbehave, alone or beside a real copy.
@Suite(.serialized, .timeLimit(.minutes(3))) struct RawProtocolTests {
    /// Opens "disk" with NBD_OPT_GO, checking the reply's length and size.
    static func open(_ connection: inout RawConnection, export: String = "disk") async throws {
        #expect(try await connection.receive(18) == ClientMessages.greeting)
        try await connection.send(ClientMessages.flags + ClientMessages.go(export))
        let reply = try #require(try await connection.receive(ClientMessages.goReplyLength))
        #expect(Array(reply[22..<30]) == ClientMessages.be(UInt64(TestImage.size), 8))
    }

    static func replyHeader(_ connection: inout RawConnection) async throws -> (error: UInt32, cookie: UInt64) {
        let header = try #require(try await connection.receive(16))
        #expect(Array(header[0..<4]) == [0x67, 0x44, 0x66, 0x98])
        let error = header[4..<8].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        let cookie = header[8..<16].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        return (error, cookie)
    }

    @Test func pipelinedReadsAreAnsweredByCookie() async throws {
        try await Harness.withServer { server in
            try await RawConnection.with(port: server.port!) { connection in
                try await Self.open(&connection)
                var generator = SystemRandomNumberGenerator()
                var asked: [UInt64: (offset: Int, length: Int)] = [:]
                var requests: [UInt8] = []
                for cookie in UInt64(1)...64 {
                    let length = Int.random(in: 1...(256 << 10), using: &generator)
                    let offset = Int.random(in: 0...(TestImage.size - length), using: &generator)
                    asked[cookie] = (offset, length)
                    requests += ClientMessages.request(0, cookie: cookie, offset: UInt64(offset), length: UInt32(length))
                }
                // The last byte of the image, alone.
                asked[65] = (TestImage.size - 1, 1)
                requests += ClientMessages.request(0, cookie: 65, offset: UInt64(TestImage.size - 1), length: 1)
                try await connection.send(requests)
                for _ in 0..<asked.count {
                    let (error, cookie) = try await Self.replyHeader(&connection)
                    #expect(error == 0)
                    let removed = asked.removeValue(forKey: cookie)
                    let range = try #require(removed)
                    let data = try #require(try await connection.receive(range.length))
                    #expect(data[...] == TestImage.bytes[range.offset..<(range.offset + range.length)], "cookie \(cookie)")
                }
                #expect(asked.isEmpty)
                try await connection.send(ClientMessages.request(2, cookie: 0))
                #expect(await connection.drainUntilClosed().isEmpty, "NBD_CMD_DISC gets no reply, then the server closes")
            }
        }
    }

    @Test func refusedRequestsKeepTheConnection() async throws {
        try await Harness.withServer { server in
            try await RawConnection.with(port: server.port!) { connection in
                try await Self.open(&connection)
                let size = UInt64(TestImage.size)
                try await connection.send(ClientMessages.request(1, cookie: 1, offset: 0, length: 100_000)
                    + [UInt8](repeating: 0xee, count: 100_000))
                #expect(try await Self.replyHeader(&connection) == (1, 1))
                try await connection.send(ClientMessages.request(0, cookie: 2, offset: size - 4095, length: 4096))
                #expect(try await Self.replyHeader(&connection) == (22, 2))
                try await connection.send(ClientMessages.request(3, cookie: 3))
                #expect(try await Self.replyHeader(&connection) == (22, 3))
                try await connection.send(ClientMessages.request(4, cookie: 4, offset: 0, length: 4096))
                #expect(try await Self.replyHeader(&connection) == (1, 4))
                try await connection.send(ClientMessages.request(0, cookie: 5, offset: 8, length: 8))
                #expect(try await Self.replyHeader(&connection) == (0, 5))
                #expect(try await connection.receive(8).map { $0[...] } == TestImage.bytes[8..<16])
            }
        }
    }

    @Test func aFailingReadGetsEIOWithNoData() async throws {
        try await Harness.withServer { server in
            try await RawConnection.with(port: server.port!) { connection in
                #expect(try await connection.receive(18) == ClientMessages.greeting)
                try await connection.send(ClientMessages.flags + ClientMessages.go("failing"))
                _ = try #require(try await connection.receive(ClientMessages.goReplyLength))
                try await connection.send(ClientMessages.request(0, cookie: 7, offset: 2 << 20, length: 4096)
                    + ClientMessages.request(0, cookie: 8, offset: 0, length: 16))
                var replies: [UInt64: UInt32] = [:]
                for _ in 0..<2 {
                    let (error, cookie) = try await Self.replyHeader(&connection)
                    replies[cookie] = error
                    if error == 0 { #expect(try await connection.receive(16) == [UInt8](repeating: 0, count: 16)) }
                }
                #expect(replies == [7: 5, 8: 0])
            }
        }
    }

    /// Each kind of bad client is disconnected, and only it.
    @Test(arguments: HostileClient.allCases)
    func misbehavingClientsAreDisconnected(_ client: HostileClient) async throws {
        var configuration = NBDServerConfiguration()
        // Short enough that the silent clients are closed soon, long enough for the good client
        // after them: nbdinfo starting while other suites keep both cores busy once took more
        // than half a second to finish its handshake, and was closed as too slow.
        configuration.handshakeTimeout = .seconds(3)
        try await Harness.withServer(configuration: configuration) { server in
            try await RawConnection.with(port: server.port!) { connection in
                try await client.misbehave(&connection)
                if !client.leaves { #expect(await connection.serverCloses(within: .seconds(60))) }
            }
            let info = try await TestSupport.runOnOwnThread("nbdinfo", ["--size", Harness.uri(server)])
            #expect(info.output.contains("\(TestImage.size)"))
        }
    }

    /// Bad clients, dozens of them, while nbdcopy copies the image: the copy is intact.
    @Test func misbehavingClientsDoNotDisturbACopy() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let image = try TestImage.write(to: dir)
            var configuration = NBDServerConfiguration()
            configuration.handshakeTimeout = .milliseconds(500)
            try await Harness.withServer(configuration: configuration) { server in
                let port = server.port!
                async let copy = TestSupport.runOnOwnThread("nbdcopy", ["--connections=2", "--request-size=65536", Harness.uri(server), dir + "/out.img"])
                for round in 0..<8 {
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        for client in HostileClient.allCases where client != .silent || round == 0 {
                            group.addTask {
                                try await RawConnection.with(port: port) { connection in
                                    try await client.misbehave(&connection)
                                    if !client.leaves { _ = await connection.drainUntilClosed() }
                                }
                            }
                        }
                        try await group.waitForAll()
                    }
                }
                let result = try await copy
                #expect(result.status == 0, "\(result.output)")
                #expect(try TestSupport.contentsEqual(image, dir + "/out.img"))
            }
        }
    }

    @Test func connectionsPastTheLimitAreClosed() async throws {
        var configuration = NBDServerConfiguration()
        configuration.maxConnections = 2
        try await Harness.withServer(configuration: configuration) { server in
            let port = server.port!
            try await RawConnection.with(port: port) { first in
                #expect(try await first.receive(18) == ClientMessages.greeting)
                try await RawConnection.with(port: port) { second in
                    #expect(try await second.receive(18) == ClientMessages.greeting)
                    let third = try await RawConnection.with(port: port) { await $0.drainUntilClosed() }
                    #expect(third.isEmpty, "the third connection is closed without a greeting")
                }
            }
            // Once they are gone, new clients are served again.
            var greeted = false
            for _ in 0..<50 where !greeted {
                greeted = try await RawConnection.with(port: port) { try await $0.receive(18) } == ClientMessages.greeting
                if !greeted { try await Task.sleep(for: .milliseconds(20)) }
            }
            #expect(greeted)
        }
    }

    @Test func stoppingClosesTheListenerAndConnections() async throws {
        let (port, closed) = try await Harness.withServer { server in
            let port = server.port!
            // A client idle in transmission when the server stops is disconnected.
            let closed = Task {
                try await RawConnection.with(port: port) { connection in
                    try await Self.open(&connection)
                    return await connection.drainUntilClosed().isEmpty
                }
            }
            try await Task.sleep(for: .milliseconds(300))
            return (port, closed)
        }
        #expect(try await closed.value)
        await #expect(throws: (any Error).self) {
            try await RawConnection.with(port: port) { _ in }
        }
    }
}

/// Ways a client can break the protocol.
enum HostileClient: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case garbage, leavesMidHandshake, oldClientFlags, badOptionMagic, hugeOption, hugeExportName
    case unknownExportName, manyOptions, badRequestMagic, hugeWrite, silent, abandonsReads

    var testDescription: String { rawValue }

    /// The client closes the connection itself instead of waiting for the server to.
    var leaves: Bool { self == .leavesMidHandshake || self == .abandonsReads }

    func misbehave(_ connection: inout RawConnection) async throws {
        switch self {
        case .garbage:
            var generator = SystemRandomNumberGenerator()
            try await connection.send((0..<4096).map { _ in UInt8.random(in: 0...255, using: &generator) })
        case .leavesMidHandshake:
            _ = try await connection.receive(10)
            try await connection.send([0, 0])
        case .oldClientFlags:
            try await connection.send([0, 0, 0, 0] + ClientMessages.go("disk"))
        case .badOptionMagic:
            try await connection.send(ClientMessages.flags + Array("IHAVEOPS".utf8) + [0, 0, 0, 3, 0, 0, 0, 0])
        case .hugeOption:
            try await connection.send(ClientMessages.flags + Array("IHAVEOPT".utf8) + [0, 0, 0, 7, 0x7f, 0xff, 0xff, 0xff])
        case .hugeExportName:
            try await connection.send(ClientMessages.flags + ClientMessages.go(String(repeating: "x", count: 5000)))
        case .unknownExportName:
            try await connection.send(ClientMessages.flags + ClientMessages.option(1, Array("absent".utf8)))
        case .manyOptions:
            try await connection.send(ClientMessages.flags + (0..<300).flatMap { _ in ClientMessages.option(8) })
        case .badRequestMagic:
            try await connection.send(ClientMessages.flags + ClientMessages.go("disk") + [UInt8](repeating: 0x41, count: 28))
        case .hugeWrite:
            try await connection.send(ClientMessages.flags + ClientMessages.go("disk")
                + ClientMessages.request(1, cookie: 1, offset: 0, length: 0xffff_ffff))
        case .silent:
            break
        case .abandonsReads:
            try await connection.send(ClientMessages.flags + ClientMessages.go("disk")
                + (0..<32).flatMap { ClientMessages.request(0, cookie: $0, offset: $0 << 20, length: 1 << 20) })
        }
    }
}
