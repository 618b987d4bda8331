import Foundation
import Testing
import ThawCache
import ThawSeal
import ThawTestSupport

@Suite struct L1CacheTests {
    static func configuration(_ directory: String?, memoryChunks: Int, diskChunks: Int) -> L1Configuration {
        L1Configuration(memoryCapacity: memoryChunks * 4096, diskCapacity: diskChunks * 4096, diskDirectory: directory)
    }

    @Test func memoryThenDiskWithPromotion() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let cache = try L1Cache(Self.configuration(dir, memoryChunks: 2, diskChunks: 10))
            let chunks = (0..<5).map { TestChunks.chunk($0) }
            #expect(await cache.get(chunks[0].name) == nil)
            for chunk in chunks { await cache.put(chunk.name, chunk.bytes) }
            var stats = cache.statistics
            #expect(stats.memory.entries == 2 && stats.disk?.entries == 5)
            #expect(stats.memory.evictions == 3)
            // The first chunk left memory; it comes back from disk and is promoted.
            #expect(await cache.get(chunks[0].name) == chunks[0].bytes)
            #expect(await cache.get(chunks[0].name) == chunks[0].bytes)
            stats = cache.statistics
            #expect(stats.memory.misses == 2 && stats.memory.hits == 1)
            #expect(stats.disk?.hits == 1 && stats.disk?.misses == 1)
            #expect(stats.memory.bytes <= 2 * 4096 && stats.disk?.bytes == 5 * 4096)
            #expect(stats.corruptFilesDropped == 0 && stats.diskWriteFailures == 0)
        }
    }

    @Test func memoryOnly() async throws {
        let cache = try L1Cache(L1Configuration(memoryCapacity: 8192))
        let chunk = TestChunks.chunk(1)
        await cache.put(chunk.name, chunk.bytes)
        #expect(await cache.get(chunk.name) == chunk.bytes)
        #expect(await cache.get(TestChunks.chunk(2).name) == nil)
        #expect(cache.statistics.disk == nil && cache.statistics.diskScan == nil)
    }

    @Test func restartServesFromDisk() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let chunks = (0..<6).map { TestChunks.chunk($0) }
            do {
                let cache = try await L1Cache.open(Self.configuration(dir, memoryChunks: 6, diskChunks: 6))
                for chunk in chunks { await cache.put(chunk.name, chunk.bytes) }
            }
            let cache = try await L1Cache.open(Self.configuration(dir, memoryChunks: 6, diskChunks: 6))
            #expect(cache.statistics.diskScan?.files == 6)
            for chunk in chunks { #expect(await cache.get(chunk.name) == chunk.bytes) }
            let stats = cache.statistics
            #expect(stats.disk?.hits == 6 && stats.memory.misses == 6 && stats.memory.entries == 6)
        }
    }

    @Test func corruptDiskCopyIsAMiss() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let chunk = TestChunks.chunk(3)
            do {
                let cache = try L1Cache(Self.configuration(dir, memoryChunks: 4, diskChunks: 4))
                await cache.put(chunk.name, chunk.bytes)
            }
            let hex = chunk.name.hex
            let path = dir + "/" + hex.prefix(2) + "/" + hex
            var bytes = chunk.bytes
            bytes[0] ^= 0xff
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            let cache = try L1Cache(Self.configuration(dir, memoryChunks: 4, diskChunks: 4))
            #expect(await cache.get(chunk.name) == nil)
            let stats = cache.statistics
            #expect(stats.corruptFilesDropped == 1 && stats.disk?.misses == 1 && stats.memory.entries == 0)
        }
    }

    @Test func invalidConfigurationIsRefused() {
        #expect(throws: CacheError.self) { try L1Cache(L1Configuration(memoryCapacity: -1)) }
        var parameters = LRUKParameters()
        parameters.k = 0
        #expect(throws: CacheError.self) { try L1Cache(L1Configuration(memoryCapacity: 1, policy: .lruK(parameters))) }
    }

    /// A chunk that cannot be written to disk (here its folder's name is taken by a file) is
    /// still served from memory, and the failure is counted.
    @Test func diskWriteFailureIsCountedNotThrown() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let chunk = TestChunks.chunk(7)
            try Data([1]).write(to: URL(fileURLWithPath: dir + "/" + chunk.name.hex.prefix(2)))
            let cache = try L1Cache(Self.configuration(dir, memoryChunks: 2, diskChunks: 2))
            await cache.put(chunk.name, chunk.bytes)
            #expect(await cache.get(chunk.name) == chunk.bytes)
            let stats = cache.statistics
            #expect(stats.diskWriteFailures == 1 && stats.disk?.entries == 0 && stats.memory.entries == 1)
        }
    }

    /// Many tasks reading and writing overlapping chunks at once: every byte returned is the
    /// chunk asked for, and neither tier ever holds more than its capacity.
    @Test func concurrentUseKeepsBoundsAndBytes() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let memoryCapacity = 12 * 4096
            let diskCapacity = 24 * 4096
            let cache = try L1Cache(L1Configuration(memoryCapacity: memoryCapacity, diskCapacity: diskCapacity, diskDirectory: dir))
            let chunks = (0..<64).map { TestChunks.chunk($0, size: [2048, 4096, 6144][$0 % 3]) }
            let wrong = await withTaskGroup(of: Int.self) { group in
                for worker in 0..<16 {
                    group.addTask {
                        var generator = SeededGenerator(seed: UInt64(worker))
                        var wrong = 0
                        for _ in 0..<300 {
                            let chunk = chunks[Int.random(in: 0..<chunks.count, using: &generator)]
                            if let bytes = await cache.get(chunk.name) {
                                if bytes != chunk.bytes { wrong += 1 }
                            } else {
                                await cache.put(chunk.name, chunk.bytes)
                            }
                            let stats = cache.statistics
                            if stats.memory.bytes > memoryCapacity || (stats.disk?.bytes ?? 0) > diskCapacity { wrong += 1 }
                        }
                        return wrong
                    }
                }
                return await group.reduce(0, +)
            }
            #expect(wrong == 0)
            let stats = cache.statistics
            #expect(stats.memory.hits + stats.memory.misses == 16 * 300)
            #expect(stats.disk!.bytes <= diskCapacity && stats.memory.bytes <= memoryCapacity)
            // The directory holds exactly the indexed chunks, and no temporary file.
            let files = try DiskTierTests.files(dir)
            #expect(files.count == stats.disk!.entries)
            #expect(files.allSatisfy { !$0.contains(".tmp-") })
            let onDisk = chunks.filter { files.contains(String($0.name.hex.prefix(2)) + "/" + $0.name.hex) }
            #expect(onDisk.reduce(0) { $0 + $1.bytes.count } == stats.disk!.bytes)
            #expect(stats.diskWriteFailures == 0 && stats.corruptFilesDropped == 0)
        }
    }
}
