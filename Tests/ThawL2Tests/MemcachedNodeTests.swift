import Foundation
import Testing
import ThawL2
import ThawTestSupport

@Suite(.serialized) struct MemcachedNodeTests {
    @Test func storesAndReadsValuesPipelined() async throws {
        let server = try MemcachedServer()
        let node = MemcachedNode(host: "127.0.0.1", port: server.port, connections: 2, timeout: .seconds(5))
        #expect(try await node.itemSizeLimit() == 2 << 20)
        let big = (0..<1_500_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        try await node.set("thaw:big", big)
        #expect(try await node.get(["thaw:big", "thaw:missing"]) == ["thaw:big": big])
        // Many requests in flight on two connections, each answered with its own value.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<200 {
                group.addTask {
                    let value = Array("value-\(i)".utf8)
                    try await node.set("thaw:k\(i)", value)
                    let got = try await node.get(["thaw:k\(i)"])
                    #expect(got["thaw:k\(i)"] == value)
                }
            }
            try await group.waitForAll()
        }
        try await node.delete("thaw:big")
        #expect(try await node.get(["thaw:big"]) == [:])
        await node.close()
    }

    @Test func oversizedValuesAndBadKeysAreRefusedClearly() async throws {
        let server = try MemcachedServer(itemSize: "1m")
        let node = MemcachedNode(host: "127.0.0.1", port: server.port, timeout: .seconds(5))
        #expect(try await node.itemSizeLimit() == 1 << 20)
        await #expect { try await node.set("thaw:huge", [UInt8](repeating: 1, count: 1_200_000)) } throws: {
            ($0 as? MemcachedError)?.kind == .server
        }
        // The connection stays usable after the refusal.
        try await node.set("thaw:small", [1, 2, 3])
        #expect(try await node.get(["thaw:small"]) == ["thaw:small": [1, 2, 3]])
        await #expect { try await node.get(["bad key"]) } throws: { ($0 as? MemcachedError)?.kind == .invalidRequest }
        await node.close()
    }

    @Test func aStoppedNodeTimesOutAndAResumedOneServesAgain() async throws {
        let server = try MemcachedServer()
        let node = MemcachedNode(host: "127.0.0.1", port: server.port, connections: 1, timeout: .milliseconds(300))
        try await node.set("thaw:x", [7])
        server.process.suspend()
        await #expect { try await node.get(["thaw:x"]) } throws: { ($0 as? MemcachedError)?.kind == .timeout }
        kill(server.process.pid, SIGCONT)
        var value: [String: [UInt8]] = [:]
        for _ in 0..<20 where value.isEmpty {
            value = (try? await node.get(["thaw:x"])) ?? [:]
        }
        #expect(value == ["thaw:x": [7]])
        await node.close()
    }

    @Test func aNodeThatIsDownIsAConnectionError() async throws {
        let port = try TestSupport.freePort()
        let node = MemcachedNode(host: "127.0.0.1", port: port, timeout: .milliseconds(500))
        await #expect { try await node.get(["thaw:x"]) } throws: { ($0 as? MemcachedError)?.kind == .connection }
    }
}
