import Foundation
import Synchronization
import Testing
import ThawCache
import ThawL2
import ThawSeal
import ThawServe
import ThawStore
import ThawTestSupport

/// The read path L1 → L2 → origin against five real memcached nodes: a chunk the origin gave
/// one worker is written back to L2 and read from there by the next, and a node killed in the
/// middle of a read load costs no read and sends no chunk L2 held to the origin.
@Suite(.serialized, .timeLimit(.minutes(3))) struct L2ReadPathTests {
    static func startL2(_ servers: [MemcachedServer], chunkSize: Int) async throws -> L2Cache {
        var configuration = L2Cache.Configuration(nodes: servers.map { ("127.0.0.1", $0.port) })
        configuration.timeout = .seconds(2)
        return try await L2Cache.start(configuration, chunkSize: chunkSize)
    }

    /// Reads the whole image in 48 KiB reads (pieces of one or two chunks) and returns the bytes.
    static func scan(_ image: LazyImage, progress: (@Sendable () -> Void)? = nil) async throws -> [UInt8] {
        var bytes: [UInt8] = []
        var offset: UInt64 = 0
        while offset < image.size {
            let length = Int(min(48 * 1024, image.size - offset))
            bytes += try await image.read(offset: offset, length: length)
            offset += UInt64(length)
            progress?()
        }
        return bytes
    }

    @Test func aChunkTheOriginGaveOneWorkerComesFromL2ForTheNext() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let setup = try await LazyImageTests.Setup(dir)
            let servers = try (0..<5).map { _ in try MemcachedServer() }
            let stored = setup.storedIndexes.count

            // The first worker: every stored chunk misses L2, comes from the origin and is written back.
            let firstOrigin = CountingStore(setup.store)
            let firstL2 = try await Self.startL2(servers, chunkSize: setup.chunkSize)
            let first = LazyImage(manifest: setup.manifest, store: firstOrigin, l2: firstL2)
            #expect(try await Self.scan(first) == setup.flat)
            #expect(await firstL2.flush(timeout: .seconds(10)) == 0)
            #expect(first.statistics.l2Misses == stored && first.statistics.l2Hits == 0)
            #expect(firstOrigin.totalGets == stored)
            #expect(firstL2.statistics.chunksStored == stored && firstL2.statistics.shardWriteFailures == 0)
            #expect(firstL2.statistics.writeBacksDropped == 0)

            // The next worker, with its own L1 and L2 client: nothing from the origin.
            let nextOrigin = CountingStore(setup.store)
            let nextL2 = try await Self.startL2(servers, chunkSize: setup.chunkSize)
            let cache = try await L1Cache.open(L1Configuration(memoryCapacity: 64 << 20))
            let next = LazyImage(manifest: setup.manifest, store: nextOrigin, cache: cache, l2: nextL2)
            #expect(try await Self.scan(next) == setup.flat)
            let stats = next.statistics
            #expect(nextOrigin.totalGets == 0, "the origin was asked for \(nextOrigin.totalGets) chunks L2 held")
            #expect(stats.originFetches == 0 && stats.l2Misses == 0)
            #expect(stats.l2Hits == stored && stats.bytesFromL2 == UInt64(stored * setup.chunkSize))
            #expect(stats.chunksFromL2 > 0)
            // A second scan is served by L1 alone.
            #expect(try await Self.scan(next) == setup.flat)
            #expect(next.statistics.l2Hits == stored)
            await firstL2.close()
            await nextL2.close()
        }
    }

    @Test func aNodeKilledDuringAReadLoadCostsNoReadAndNoOriginFetch() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let setup = try await LazyImageTests.Setup(dir)
            let servers = try (0..<5).map { _ in try MemcachedServer() }
            let l2 = try await Self.startL2(servers, chunkSize: setup.chunkSize)
            let warm = LazyImage(manifest: setup.manifest, store: setup.store, l2: l2)
            _ = try await Self.scan(warm)
            #expect(await l2.flush(timeout: .seconds(10)) == 0)
            #expect(l2.statistics.writeBacksDropped == 0 && l2.statistics.chunksStored == setup.storedIndexes.count)

            // Four readers, each scanning the image three times through images of their own
            // (no L1, so every chunk is looked up in L2 again); node 2 is killed once half the
            // reads are done.
            let origin = CountingStore(setup.store)
            let totalReads = 4 * 3 * Int((setup.manifest.header.imageSize + 48 * 1024 - 1) / (48 * 1024))
            let trigger = KillAtHalf(pid: servers[2].process.pid, after: totalReads / 2, l2: l2)
            let manifest = setup.manifest, flat = setup.flat
            let images = try await withThrowingTaskGroup(of: [LazyImage].self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        var used: [LazyImage] = []
                        for _ in 0..<3 {
                            let image = LazyImage(manifest: manifest, store: origin, l2: l2)
                            used.append(image)
                            let bytes = try await Self.scan(image) { trigger.readDone() }
                            #expect(bytes == flat)
                        }
                        return used
                    }
                }
                var all: [LazyImage] = []
                for try await used in group { all += used }
                return all
            }
            let killedAt = try #require(trigger.lookupsAtKill, "the node was never killed")
            let stats = l2.statistics
            #expect(stats.hits + stats.misses > killedAt + 20, "too few lookups after the kill to tell")
            #expect(origin.totalGets == 0, "\(origin.totalGets) chunks L2 held went to the origin")
            #expect(images.allSatisfy { $0.statistics.fetchErrors == 0 && $0.statistics.originFetches == 0 })
            #expect(stats.shardsMissingOrLate > 0, "no lookup noticed the killed node")
            await l2.close()
        }
    }

    @Test func aStoppedNodeKeepsReadsAtTheirNormalLatency() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let setup = try await LazyImageTests.Setup(dir)
            let servers = try (0..<5).map { _ in try MemcachedServer() }
            // A node timeout far above a normal read: any read that waited for the stopped node shows.
            var configuration = L2Cache.Configuration(nodes: servers.map { ("127.0.0.1", $0.port) })
            configuration.timeout = .seconds(10)
            let l2 = try await L2Cache.start(configuration, chunkSize: setup.chunkSize)
            _ = try await Self.scan(LazyImage(manifest: setup.manifest, store: setup.store, l2: l2))
            #expect(await l2.flush(timeout: .seconds(10)) == 0)

            servers[3].process.suspend()
            let origin = CountingStore(setup.store)
            let image = LazyImage(manifest: setup.manifest, store: origin, l2: l2)
            let clock = ContinuousClock()
            var slowest = Duration.zero
            var offset: UInt64 = 0
            while offset < image.size {
                let length = Int(min(48 * 1024, image.size - offset))
                let started = clock.now
                let bytes = try await image.read(offset: offset, length: length)
                slowest = max(slowest, clock.now - started)
                #expect(bytes == Array(setup.flat[Int(offset)..<Int(offset) + length]))
                offset += UInt64(length)
            }
            servers[3].process.resume()
            // Waiting for the stopped node would take its 10 s timeout; the bound leaves room for
            // a loaded machine.
            #expect(slowest < .seconds(5), "a read waited \(slowest) for the stopped node")
            #expect(origin.totalGets == 0 && image.statistics.l2Hits == setup.storedIndexes.count)
            #expect(l2.statistics.shardsMissingOrLate > 0, "no lookup did without the stopped node")
            await l2.close()
        }
    }

    @Test func aCorruptShardStillServesTheRightBytes() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let setup = try await LazyImageTests.Setup(dir)
            let servers = try (0..<5).map { _ in try MemcachedServer() }
            let l2 = try await Self.startL2(servers, chunkSize: setup.chunkSize)
            _ = try await Self.scan(LazyImage(manifest: setup.manifest, store: setup.store, l2: l2))
            #expect(await l2.flush(timeout: .seconds(10)) == 0)
            #expect(l2.statistics.writeBacksDropped == 0)
            // Garbage under shard 1 of every stored chunk, wherever it lives.
            let nodes = servers.map { MemcachedNode(host: "127.0.0.1", port: $0.port, timeout: .seconds(2)) }
            var corrupted = 0
            for index in setup.storedIndexes {
                let key = l2.key(setup.manifest.chunks[index]!.name, shard: 1)
                for node in nodes {
                    guard var value = try await node.get([key])[key] else { continue }
                    for i in stride(from: 12, to: value.count, by: 5) { value[i] &+= 1 }
                    try await node.set(key, value)
                    corrupted += 1
                }
            }
            #expect(corrupted == setup.storedIndexes.count)
            let origin = CountingStore(setup.store)
            let image = LazyImage(manifest: setup.manifest, store: origin, l2: l2)
            #expect(try await Self.scan(image) == setup.flat)
            #expect(origin.totalGets == 0, "a corrupt shard sent chunks to the origin")
            #expect(image.statistics.l2Hits == setup.storedIndexes.count)
            for node in nodes { await node.close() }
            await l2.close()
        }
    }
}

/// Kills a memcached node with SIGKILL when the load's reads reach a count, and notes how many
/// L2 lookups had been made by then.
final class KillAtHalf: Sendable {
    let pid: pid_t
    let after: Int
    let l2: L2Cache
    private let state = Mutex<(reads: Int, lookupsAtKill: Int?)>((0, nil))

    init(pid: pid_t, after: Int, l2: L2Cache) {
        self.pid = pid
        self.after = after
        self.l2 = l2
    }

    var lookupsAtKill: Int? { state.withLock { $0.lookupsAtKill } }

    func readDone() {
        let now = state.withLock { s -> Bool in
            s.reads += 1
            return s.reads == after
        }
        guard now else { return }
        kill(pid, SIGKILL)
        let statistics = l2.statistics
        state.withLock { $0.lookupsAtKill = statistics.hits + statistics.misses }
    }
}
