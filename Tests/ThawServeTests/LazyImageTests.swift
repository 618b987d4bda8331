import Foundation
import Testing
import ThawCache
import ThawFlatten
import ThawImage
import ThawPush
import ThawSeal
import ThawServe
import ThawStore
import ThawTestSupport

/// The lazy read path against a real pushed image in a directory store: bytes equal the
/// flattened image, one origin fetch per chunk, read-ahead, deadlines and corrupt chunks.
@Suite struct LazyImageTests {
    struct Setup {
        let dir: String
        let store: DirectoryStore
        let keys: LocalKeyProvider
        let manifest: Manifest
        let flat: [UInt8]

        /// Pushes the sample image with 64 KiB chunks (many chunks from a small image) and flattens it.
        init(_ dir: String) async throws {
            self.dir = dir
            let layout = dir + "/oci"
            try Fixtures.make("full", in: layout)
            store = try DirectoryStore(path: dir + "/store", create: true)
            keys = LocalKeyProvider(directory: dir + "/keys")
            var options = PushOptions()
            options.chunkSize = 64 * 1024
            let image = try Image.open(.ociLayout(path: layout, tag: "full"))
            let report = try await Pusher(store: store, keys: keys, options: options).push(image)
            manifest = try await Manifest.open(try await store.get(report.manifestKey), keys: keys)
            _ = try Flattener(chunkSize: 64 * 1024).flatten(try Image.open(.ociLayout(path: layout, tag: "full")), to: dir + "/flat.ext4")
            flat = [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir + "/flat.ext4")))
        }

        var chunkSize: Int { Int(manifest.header.chunkSize) }
        var storedIndexes: [Int] { manifest.chunks.indices.filter { manifest.chunks[$0] != nil } }
        var zeroIndexes: [Int] { manifest.chunks.indices.filter { manifest.chunks[$0] == nil } }

        func expected(_ offset: Int, _ length: Int) -> [UInt8] { Array(flat[offset..<(offset + length)]) }
    }

    @Test func readsEqualTheFlattenedImage() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let setup = try await Setup(dir)
            let image = LazyImage(manifest: setup.manifest, store: setup.store)
            #expect(image.size == UInt64(setup.flat.count))
            #expect(!setup.zeroIndexes.isEmpty && !setup.storedIndexes.isEmpty)
            let c = setup.chunkSize
            let size = setup.flat.count
            var cases: [(Int, Int)] = [(0, 1), (0, c), (c - 3, 7), (size - 1, 1), (size - c, c), (size - 100, 100), (0, 4 * c + 17), (0, 0)]
            if let zero = setup.zeroIndexes.first { cases += [(zero * c, c), (zero * c + 5, 1000)] }
            if let stored = setup.storedIndexes.last { cases += [(stored * c + 1, c - 2), (stored * c - 10, 20)] }
            var generator = SystemRandomNumberGenerator()
            for _ in 0..<300 {
                let offset = Int.random(in: 0..<size, using: &generator)
                let length = Int.random(in: 0...min(3 * c, size - offset), using: &generator)
                cases.append((offset, length))
            }
            for (offset, length) in cases {
                let bytes = try await image.read(offset: UInt64(offset), length: length)
                #expect(bytes == setup.expected(offset, length), "read of \(length) at \(offset)")
            }
            // A whole scan equals the flattened file.
            var whole: [UInt8] = []
            var offset = 0
            while offset < size {
                let length = min(100_000, size - offset)
                whole += try await image.read(offset: UInt64(offset), length: length)
                offset += length
            }
            #expect(whole == setup.flat)
            let stats = image.statistics
            #expect(stats.chunksFromZero > 0)
            #expect(stats.fetchErrors == 0)
            await #expect(throws: ReadOutOfRangeError.self) { try await image.read(offset: UInt64(size - 1), length: 2) }
            await #expect(throws: ReadOutOfRangeError.self) { try await image.read(offset: UInt64(size + 1), length: 0) }
        }
    }

    @Test func zeroChunksNeedNoFetch() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let setup = try await Setup(dir)
            let store = CountingStore(setup.store)
            let image = LazyImage(manifest: setup.manifest, store: store, configuration: LazyImageConfiguration(readAhead: 0))
            let zero = try #require(setup.zeroIndexes.first)
            let bytes = try await image.read(offset: UInt64(zero * setup.chunkSize), length: setup.chunkSize)
            #expect(bytes.allSatisfy { $0 == 0 })
            #expect(store.totalGets == 0)
            #expect(image.statistics.chunksFromZero == 1)
        }
    }

    @Test func concurrentReadsOfOneChunkMakeOneOriginFetch() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let setup = try await Setup(dir)
            let store = CountingStore(setup.store)
            store.setDelay(.milliseconds(200))
            let image = LazyImage(manifest: setup.manifest, store: store, configuration: LazyImageConfiguration(readAhead: 0))
            let index = try #require(setup.storedIndexes.first)
            let c = setup.chunkSize
            let results = try await withThrowingTaskGroup(of: (Int, [UInt8]).self) { group in
                for task in 0..<32 {
                    group.addTask {
                        let offset = index * c + task * 100
                        return (offset, try await image.read(offset: UInt64(offset), length: 500))
                    }
                }
                return try await group.reduce(into: [(Int, [UInt8])]()) { $0.append($1) }
            }
            for (offset, bytes) in results { #expect(bytes == setup.expected(offset, 500)) }
            let name = try #require(setup.manifest.chunks[index]).name
            #expect(store.gets(of: name) == 1)
            let stats = image.statistics
            #expect(stats.originFetches == 1)
            #expect(stats.singleFlightJoins + stats.chunksFromMemory == 31)
            #expect(stats.singleFlightJoins > 0)
        }
    }

    @Test func failedFetchIsNotCachedAndTheNextReadTriesAgain() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let setup = try await Setup(dir)
            let store = CountingStore(setup.store)
            let image = LazyImage(manifest: setup.manifest, store: store, configuration: LazyImageConfiguration(readAhead: 0))
            let index = setup.storedIndexes[0]
            let offset = index * setup.chunkSize + 10
            store.failNext(1)
            do {
                _ = try await image.read(offset: UInt64(offset), length: 10)
                Issue.record("read through a failing store succeeded")
            } catch let error as ChunkFetchError {
                #expect(error.kind == .unavailable)
                #expect(error.chunkIndex == index)
            }
            let bytes = try await image.read(offset: UInt64(offset), length: 10)
            #expect(bytes == setup.expected(offset, 10))
            #expect(store.gets(of: setup.manifest.chunks[index]!.name) == 2)
            #expect(image.statistics.fetchErrors == 1)
            #expect(image.statistics.originFetches == 2)
        }
    }

    @Test func fetchPastTheDeadlineStillFillsTheCache() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let setup = try await Setup(dir)
            let store = CountingStore(setup.store)
            let cache = try L1Cache(L1Configuration(memoryCapacity: 16 << 20))
            let image = LazyImage(manifest: setup.manifest, store: store, cache: cache,
                                  configuration: LazyImageConfiguration(readAhead: 0, deadline: .milliseconds(100)))
            let index = setup.storedIndexes[0]
            let name = setup.manifest.chunks[index]!.name
            store.setHang(.milliseconds(500))
            await #expect(throws: ChunkDeadlineError.self) {
                try await image.read(offset: UInt64(index * setup.chunkSize), length: 10)
            }
            for _ in 0..<300 where await cache.get(name) == nil { try await Task.sleep(for: .milliseconds(10)) }
            let bytes = try await image.read(offset: UInt64(index * setup.chunkSize), length: 10)
            #expect(bytes == setup.expected(index * setup.chunkSize, 10))
            #expect(store.gets(of: name) == 1)
        }
    }

    @Test func sequentialScanTriggersReadAhead() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let setup = try await Setup(dir)
            let store = CountingStore(setup.store)
            let image = LazyImage(manifest: setup.manifest, store: store,
                                  configuration: LazyImageConfiguration(readAhead: 4, readAheadTrigger: UInt64(setup.chunkSize)))
            let c = setup.chunkSize
            // The longest run of stored chunks: reads walk its first two chunks.
            let stored = Set(setup.storedIndexes)
            let start = try #require(setup.storedIndexes.first { i in (0..<6).allSatisfy { stored.contains(i + $0) } })
            _ = try await image.read(offset: UInt64(start * c), length: c / 2)
            _ = try await image.read(offset: UInt64(start * c + c / 2), length: c / 2)
            _ = try await image.read(offset: UInt64((start + 1) * c), length: c / 2)
            // Read-ahead runs in the background: wait until chunks start+2 ... start+5 were fetched.
            let ahead = (start + 2)...(start + 5)
            let names = ahead.map { setup.manifest.chunks[$0]!.name }
            for _ in 0..<200 where !names.allSatisfy({ store.gets(of: $0) == 1 }) {
                try await Task.sleep(for: .milliseconds(10))
            }
            for name in names { #expect(store.gets(of: name) == 1, "chunk \(name) fetched ahead") }
            #expect(image.statistics.readAheadFetches >= 4)
            // Reading them now needs no further origin fetch.
            let before = store.totalGets
            let bytes = try await image.read(offset: UInt64((start + 2) * c), length: 4 * c)
            #expect(bytes == setup.expected((start + 2) * c, 4 * c))
            for name in names { #expect(store.gets(of: name) == 1) }
            #expect(store.totalGets - before <= 4) // only further read-ahead, never the chunks read
        }
    }

    /// With one read-ahead permit and four chunks queued for read-ahead, a read of the last of
    /// them is promoted to a demand fetch instead of waiting for the three before it.
    @Test func demandReadDoesNotWaitBehindReadAhead() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let setup = try await Setup(dir)
            let store = CountingStore(setup.store)
            let image = LazyImage(manifest: setup.manifest, store: store,
                                  configuration: LazyImageConfiguration(readAhead: 4, maximumOriginFetches: 2,
                                                                        readAheadTrigger: UInt64(setup.chunkSize)))
            let c = setup.chunkSize
            let stored = Set(setup.storedIndexes)
            let start = try #require(setup.storedIndexes.first { i in (0..<6).allSatisfy { stored.contains(i + $0) } })
            _ = try await image.read(offset: UInt64(start * c), length: c / 2)
            // Fetches ahead take 10 s each; the chunk read below answers at once.
            store.setDelay(.seconds(10))
            store.setDelay(.zero, of: setup.manifest.chunks[start + 4]!.name)
            // A stream of a whole chunk: queues read-ahead of start+1 ... start+4, one at a time.
            _ = try await image.read(offset: UInt64(start * c + c / 2), length: c / 2)
            let clock = ContinuousClock()
            let began = clock.now
            let bytes = try await image.read(offset: UInt64((start + 4) * c), length: 100)
            let elapsed = clock.now - began
            #expect(bytes == setup.expected((start + 4) * c, 100))
            // Behind the read-ahead queue this would wait for three fetches, 30 s; promoted, it
            // waits for none. The bound sits far from both, for a loaded machine.
            #expect(elapsed < .seconds(10), "took \(elapsed)")
            #expect(store.gets(of: setup.manifest.chunks[start + 4]!.name) == 1)
        }
    }

    /// Reads near each other that are not one stream (small files of a start) fetch nothing ahead.
    @Test func scatteredSmallReadsFetchNothingAhead() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let setup = try await Setup(dir)
            let store = CountingStore(setup.store)
            let image = LazyImage(manifest: setup.manifest, store: store,
                                  configuration: LazyImageConfiguration(readAhead: 4, readAheadTrigger: UInt64(setup.chunkSize)))
            let c = setup.chunkSize
            for index in setup.storedIndexes.prefix(8) {
                _ = try await image.read(offset: UInt64(index * c + 4096), length: 8192)
                _ = try await image.read(offset: UInt64(index * c + c - 8192), length: 8192)
            }
            try await Task.sleep(for: .milliseconds(100))
            #expect(image.statistics.readAheadFetches == 0)
            #expect(store.totalGets == min(8, setup.storedIndexes.count))
        }
    }

    @Test func hangingStoreFailsAtTheDeadlineWhileCachedReadsSucceed() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let setup = try await Setup(dir)
            let store = CountingStore(setup.store)
            let cache = try L1Cache(L1Configuration(memoryCapacity: 16 << 20))
            let image = LazyImage(manifest: setup.manifest, store: store, cache: cache,
                                  configuration: LazyImageConfiguration(readAhead: 0, deadline: .milliseconds(300)))
            let c = setup.chunkSize
            let cached = setup.storedIndexes[0]
            let uncached = setup.storedIndexes[1]
            _ = try await image.read(offset: UInt64(cached * c), length: 10)
            store.setHang(.seconds(60))
            let clock = ContinuousClock()
            let started = clock.now
            do {
                _ = try await image.read(offset: UInt64(uncached * c), length: 10)
                Issue.record("read of a hanging chunk succeeded")
            } catch let error as ChunkDeadlineError {
                #expect(error.chunkIndex == uncached)
                #expect(error.chunk == setup.manifest.chunks[uncached]!.name)
                #expect(error.store == store.location)
                #expect(error.deadline == .milliseconds(300))
                #expect("\(error)".contains(error.chunk.hex))
            }
            let elapsed = clock.now - started
            // Not before the deadline, and far from the store's 60 s hang (a loaded machine may
            // hold tasks up for seconds).
            #expect(elapsed >= .milliseconds(300) && elapsed < .seconds(20))
            let bytes = try await image.read(offset: UInt64(cached * c + 3), length: 100)
            #expect(bytes == setup.expected(cached * c + 3, 100))
            #expect(image.statistics.deadlineExpiries == 1)
        }
    }

    @Test func corruptChunkGivesAnErrorNamingIt() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let setup = try await Setup(dir)
            let index = setup.storedIndexes[0]
            let name = setup.manifest.chunks[index]!.name
            let path = setup.store.root + "/" + StoreLayout.chunk(name, root: setup.manifest.header.root).path
            var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
            bytes[100] ^= 0xff
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            let image = LazyImage(manifest: setup.manifest, store: setup.store, configuration: LazyImageConfiguration(readAhead: 0))
            do {
                _ = try await image.read(offset: UInt64(index * setup.chunkSize), length: 10)
                Issue.record("read of a corrupt chunk succeeded")
            } catch let error as ChunkFetchError {
                #expect(error.chunk == name)
                #expect(error.chunkIndex == index)
                #expect(error.kind == .corrupt)
                #expect("\(error)".contains(name.hex))
            }
            #expect(image.statistics.fetchErrors == 1)
            // The failure is not cached: a repaired chunk reads on the next try.
            bytes[100] ^= 0xff
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            let good = try await image.read(offset: UInt64(index * setup.chunkSize), length: 10)
            #expect(good == setup.expected(index * setup.chunkSize, 10))
        }
    }

    @Test func l1HitAvoidsTheOrigin() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let setup = try await Setup(dir)
            let store = CountingStore(setup.store)
            let cache = try L1Cache(L1Configuration(memoryCapacity: 16 << 20))
            let index = setup.storedIndexes[0]
            let name = setup.manifest.chunks[index]!.name
            await cache.put(name, try await setup.store.getChunk(name, root: setup.manifest.header.root))
            let image = LazyImage(manifest: setup.manifest, store: store, cache: cache, configuration: LazyImageConfiguration(readAhead: 0))
            let offset = index * setup.chunkSize + 1234
            let bytes = try await image.read(offset: UInt64(offset), length: 5000)
            #expect(bytes == setup.expected(offset, 5000))
            #expect(store.totalGets == 0)
            #expect(image.statistics.chunksFromL1 == 1)
            #expect(image.statistics.originFetches == 0)
            // A miss goes to the origin once and lands in L1.
            let other = setup.storedIndexes[1]
            _ = try await image.read(offset: UInt64(other * setup.chunkSize), length: 10)
            _ = try await image.read(offset: UInt64(other * setup.chunkSize + 20), length: 10)
            #expect(store.totalGets == 1)
            #expect(image.statistics.chunksFromL1 == 2)
        }
    }

    @Test func readNowServesWhatIsInMemoryAndLeavesTheRestToRead() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let setup = try await Setup(dir)
            let store = CountingStore(setup.store)
            let cache = try L1Cache(L1Configuration(memoryCapacity: 16 << 20))
            let image = LazyImage(manifest: setup.manifest, store: store, cache: cache, configuration: LazyImageConfiguration(readAhead: 0))
            let (first, second) = (setup.storedIndexes[0], setup.storedIndexes[1])
            // Not in memory: nil, and nothing counted or fetched.
            #expect(image.readNow(offset: UInt64(first * setup.chunkSize), length: 100) == nil)
            #expect(image.statistics.reads == 0)
            #expect(store.totalGets == 0)
            // Once `read` has fetched it, the same bytes come at once, counted as an L1 hit.
            let offset = first * setup.chunkSize + 777
            _ = try await image.read(offset: UInt64(offset), length: 10)
            let now = try #require(image.readNow(offset: UInt64(offset), length: 3000))
            #expect(now == setup.expected(offset, 3000))
            #expect(image.statistics.reads == 2)
            #expect(image.statistics.chunksFromL1 == 1)
            #expect(store.totalGets == 1)
            // A range that also needs a chunk not in memory is left to `read`; a zero chunk needs nothing.
            let across = first * setup.chunkSize + setup.chunkSize - 50
            if second == first + 1 {
                #expect(image.readNow(offset: UInt64(across), length: 100) == nil)
                #expect(image.statistics.reads == 2)
            }
            if let zero = setup.zeroIndexes.first {
                #expect(image.readNow(offset: UInt64(zero * setup.chunkSize), length: 4096) == [UInt8](repeating: 0, count: 4096))
            }
            // Out of range: nil, for `read` to refuse with its error.
            #expect(image.readNow(offset: image.size - 10, length: 20) == nil)
        }
    }
}
