import Foundation
import Logging
import Testing
import ThawNBD

/// Graceful shutdown: reads already received are answered, then connections close and `run()`
/// returns; nothing new is accepted meanwhile.
@Suite struct DrainTests {
    /// An export whose reads take a while, like a chunk on its way from the origin.
    struct SlowExport: NBDExport {
        let delay: Duration
        var size: UInt64 { UInt64(TestImage.size) }
        func read(offset: UInt64, length: Int) async throws -> [UInt8] {
            try await Task.sleep(for: delay)
            return Array(TestImage.bytes[Int(offset)..<(Int(offset) + length)])
        }
    }

    @Test func drainAnswersReadsInFlightThenCloses() async throws {
        let catalog = TestCatalog(exports: ["disk": SlowExport(delay: .milliseconds(400))])
        let server = try await NBDServer.bind(.tcp(), catalog: catalog, logger: Harness.logger)
        let port = try #require(server.port)
        let running = Task { try await server.run() }
        let replies = try await RawConnection.with(port: port) { connection in
            try await RawProtocolTests.open(&connection)
            try await connection.send(ClientMessages.request(0, cookie: 1, offset: 4096, length: 8192)
                + ClientMessages.request(0, cookie: 2, offset: 1 << 20, length: 100))
            try await Task.sleep(for: .milliseconds(100))
            let started = ContinuousClock.now
            server.drain(timeout: .seconds(60))
            var answered: [UInt64: [UInt8]] = [:]
            for _ in 0..<2 {
                let (error, cookie) = try await RawProtocolTests.replyHeader(&connection)
                #expect(error == 0)
                let length = cookie == 1 ? 8192 : 100
                let bytes: [UInt8] = try #require(try await connection.receive(length))
                answered[cookie] = bytes
            }
            // Then the server closes the connection by itself, long before the drain timeout
            // (the bound is loose: a loaded machine may hold up the server's tasks for seconds).
            #expect(await connection.drainUntilClosed().isEmpty)
            #expect(ContinuousClock.now - started < .seconds(45))
            return answered
        }
        #expect(replies[1] == Array(TestImage.bytes[4096..<(4096 + 8192)]))
        #expect(replies[2] == Array(TestImage.bytes[(1 << 20)..<((1 << 20) + 100)]))
        try await running.value  // run() returns once drained, without being cancelled
        // The listener is closed: nobody is accepted any more.
        await #expect(throws: (any Error).self) {
            try await RawConnection.with(port: port) { connection in _ = try await connection.receive(18) }
        }
    }

    @Test func drainClosesConnectionsThatOutlastTheTimeout() async throws {
        let catalog = TestCatalog(exports: ["disk": SlowExport(delay: .seconds(60))])
        let server = try await NBDServer.bind(.tcp(), catalog: catalog, logger: Harness.logger)
        let running = Task { try await server.run() }
        try await RawConnection.with(port: try #require(server.port)) { connection in
            try await RawProtocolTests.open(&connection)
            try await connection.send(ClientMessages.request(0, cookie: 1, offset: 0, length: 512))
            try await Task.sleep(for: .milliseconds(100))
            let started = ContinuousClock.now
            server.drain(timeout: .milliseconds(300))
            _ = await connection.drainUntilClosed()
            // Cut at the drain timeout, long before the read would have ended.
            #expect(ContinuousClock.now - started < .seconds(45))
        }
        try await running.value
    }
}
