import Foundation
import Testing
@testable import ThawL2
import ThawSeal
import ThawTestSupport

/// The L2 cache against five real memcached nodes, with nodes killed, stopped, restarted and
/// shards corrupted.
@Suite(.serialized) struct L2CacheTests {
    /// Random chunks, made eight bytes at a time: byte-wise generation in a debug build would
    /// hold one of the suite's two cores for seconds.
    static func chunks(_ count: Int, size: Int = 512 * 1024) -> [(ChunkName, [UInt8])] {
        var generator = SystemRandomNumberGenerator()
        return (0..<count).map { _ in
            var bytes = [UInt8](repeating: 0, count: size)
            bytes.withUnsafeMutableBytes { raw in
                for offset in stride(from: 0, to: size, by: 8) { raw.storeBytes(of: generator.next(), toByteOffset: offset, as: UInt64.self) }
            }
            return (ChunkName.of(bytes), bytes)
        }
    }

    static func configuration(_ servers: [MemcachedServer], timeout: Duration = .seconds(2)) -> L2Cache.Configuration {
        var configuration = L2Cache.Configuration(nodes: servers.map { ("127.0.0.1", $0.port) })
        configuration.timeout = timeout
        return configuration
    }

    @Test func chunksRoundTripAndMissesAreNil() async throws {
        let servers = try (0..<5).map { _ in try MemcachedServer() }
        let cache = try await L2Cache.start(Self.configuration(servers), chunkSize: 512 * 1024)
        let chunks = Self.chunks(8)
        for (name, bytes) in chunks { await cache.put(name, bytes) }
        for (name, bytes) in chunks { #expect(await cache.get(name) == bytes) }
        #expect(await cache.get(ChunkName.of([1, 2, 3])) == nil)
        let stats = cache.statistics
        #expect(stats.hits == 8 && stats.misses == 1 && stats.chunksStored == 8 && stats.shardWriteFailures == 0)
    }

    @Test func aNodeTooSmallForAShardIsRefusedAtStart() async throws {
        let servers = try (0..<4).map { _ in try MemcachedServer() } + [try MemcachedServer(itemSize: "128k")]
        await #expect { try await L2Cache.start(Self.configuration(servers), chunkSize: 512 * 1024) } throws: { error in
            "\(error)".contains("127.0.0.1:\(servers[4].port)") && "\(error)".contains("-I")
        }
        await #expect { try await L2Cache.start(Self.configuration(Array(servers.prefix(4))), chunkSize: 512 * 1024) } throws: {
            "\($0)".contains("need as many L2 nodes")
        }
    }

    @Test func withoutParityALostNodeLosesExactlyItsChunksAsMisses() async throws {
        let servers = try (0..<5).map { _ in try MemcachedServer() }
        let chunks = Self.chunks(20)
        // 4-of-4 striping and a single whole copy: both read back while every node is up.
        var caches: [L2Cache] = []
        for k in [4, 1] {
            var configuration = Self.configuration(servers)
            configuration.dataShards = k
            configuration.parityShards = 0
            let cache = try await L2Cache.start(configuration, chunkSize: 512 * 1024)
            for (name, bytes) in chunks { await cache.put(name, bytes) }
            for (name, bytes) in chunks { #expect(await cache.get(name) == bytes, "k = \(k), m = 0") }
            caches.append(cache)
        }
        // One node gone: exactly the chunks with a shard there miss; the rest read back whole.
        kill(servers[1].process.pid, SIGKILL)
        for cache in caches {
            let k = cache.configuration.dataShards
            var expected = 0, misses = 0
            for (name, bytes) in chunks {
                if cache.placement.nodes(for: name.bytes, count: k).contains(1) { expected += 1 }
                let got = await cache.get(name)
                if got == nil { misses += 1 } else { #expect(got == bytes) }
            }
            #expect(misses == expected, "k = \(k): \(misses) misses, \(expected) chunks had a shard on the lost node")
            await cache.close()
        }
        var duplicated = Self.configuration(servers)
        duplicated.nodes[4] = duplicated.nodes[0]
        await #expect { try await L2Cache.start(duplicated, chunkSize: 512 * 1024) } throws: { "\($0)".contains("listed twice") }
    }

    @Test func aKilledNodeCostsNoReadAndARestartedOneFillsAgain() async throws {
        var servers = try (0..<5).map { _ in try MemcachedServer() }
        let cache = try await L2Cache.start(Self.configuration(servers), chunkSize: 512 * 1024)
        let chunks = Self.chunks(20)
        for (name, bytes) in chunks { await cache.put(name, bytes) }
        let port = servers[2].port
        kill(servers[2].process.pid, SIGKILL)
        // Every chunk still rebuilds from the four shards left.
        for (name, bytes) in chunks { #expect(await cache.get(name) == bytes) }
        #expect(cache.statistics.misses == 0)
        #expect(cache.statistics.shardsMissingOrLate >= 20)
        // The node comes back empty on the same port; new writes fill it.
        servers[2] = try MemcachedServer(reusing: port)
        let fresh = Self.chunks(5)
        for (name, bytes) in fresh { await cache.put(name, bytes) }
        let before = cache.statistics.shardWriteFailures
        for (name, bytes) in fresh { await cache.put(name, bytes) }
        #expect(cache.statistics.shardWriteFailures == before, "writes to the restarted node fail")
        for (name, bytes) in fresh { #expect(await cache.get(name) == bytes) }
    }

    @Test func aStoppedNodeDoesNotSlowReads() async throws {
        let servers = try (0..<5).map { _ in try MemcachedServer() }
        let cache = try await L2Cache.start(Self.configuration(servers, timeout: .seconds(10)), chunkSize: 512 * 1024)
        let chunks = Self.chunks(10)
        for (name, bytes) in chunks { await cache.put(name, bytes) }
        servers[0].process.suspend()
        defer { kill(servers[0].process.pid, SIGCONT) }
        let clock = ContinuousClock()
        var slowest = Duration.zero
        for (name, bytes) in chunks {
            let started = clock.now
            #expect(await cache.get(name) == bytes)
            slowest = max(slowest, clock.now - started)
        }
        // Waiting for the stopped node would take its 10 s timeout; the bound leaves room for a
        // loaded machine.
        #expect(slowest < .seconds(5), "a read waited \(slowest) for the stopped node")
    }

    @Test func corruptShardsAreOutvotedOrMakeAMissNeverGarbage() async throws {
        let servers = try (0..<5).map { _ in try MemcachedServer() }
        let cache = try await L2Cache.start(Self.configuration(servers), chunkSize: 512 * 1024)
        let (name, bytes) = Self.chunks(1)[0]
        await cache.put(name, bytes)
        // Garbage under one shard's key, with a valid header: only the name check can tell.
        let nodes = servers.map { MemcachedNode(host: "127.0.0.1", port: $0.port, timeout: .seconds(2)) }
        func corrupt(shard: Int) async throws -> Bool {
            let key = cache.key(name, shard: shard)
            for node in nodes {
                guard var value = try await node.get([key])[key] else { continue }
                for i in stride(from: 12, to: value.count, by: 7) { value[i] ^= 0xFF }
                try await node.set(key, value)
                return true
            }
            return false
        }
        #expect(try await corrupt(shard: 0))
        #expect(await cache.get(name) == bytes)
        // A second bad shard leaves no good k-subset for (4, 1): a miss, not wrong bytes.
        #expect(try await corrupt(shard: 3))
        #expect(await cache.get(name) == nil)
        #expect(cache.statistics.badChunks >= 1)
        for node in nodes { await node.close() }
    }
}
