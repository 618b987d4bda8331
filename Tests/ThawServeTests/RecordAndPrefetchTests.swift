import Foundation
import Testing
import ThawCache
import ThawSeal
import ThawServe
import ThawStore
import ThawTestSupport

/// Record and prefetch: the recorder's first-touch order, the prefetch of a record through L1,
/// prefetch hits, and demand reads overtaking a long prefetch.
@Suite struct RecordAndPrefetchTests {
    typealias Setup = LazyImageTests.Setup

    @Test func recorderNotesStoredChunksOnceInFirstTouchOrder() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let setup = try await Setup(dir)
            let stored = setup.storedIndexes
            try #require(stored.count >= 4)
            let zero = try #require(setup.zeroIndexes.first)
            let recorder = AccessRecorder(chunkCount: setup.manifest.chunks.count, imageSize: setup.manifest.header.imageSize)
            let image = LazyImage(manifest: setup.manifest, store: setup.store,
                                  configuration: LazyImageConfiguration(readAhead: 0), recorder: recorder)
            let c = setup.chunkSize
            let order = [stored[3], stored[0], stored[3], stored[2], stored[0]]
            for index in order { _ = try await image.read(offset: UInt64(index * c + 10), length: 100) }
            _ = try await image.read(offset: UInt64(zero * c), length: 10)
            // A read spanning two chunks notes both, in order.
            _ = try await image.read(offset: UInt64(stored[1] * c + c - 5), length: 10)
            #expect(recorder.count >= 4)
            #expect(recorder.isRecording)
            let finished = try #require(recorder.finish())
            let recorded = finished.chunks.map(Int.init)
            #expect(Array(recorded.prefix(4)) == [stored[3], stored[0], stored[2], stored[1]])
            // Blocks too, zero chunks included, each once, in first-touch order.
            let b = c / 4096
            var expectedBlocks: [UInt32] = []
            for block in [stored[3] * b, stored[0] * b, stored[2] * b, zero * b, stored[1] * b + b - 1, (stored[1] + 1) * b]
            where !expectedBlocks.contains(UInt32(block)) {
                expectedBlocks.append(UInt32(block))
            }
            #expect(finished.blocks.flatMap { run in (run.first..<(run.first + run.count)).map { $0 } } == expectedBlocks)
            #expect(!recorded.contains(zero))
            #expect(Set(recorded).count == recorded.count)
            #expect(recorder.finish() == nil, "a second finish saves nothing")
            _ = try await image.read(offset: UInt64(stored[1] * c), length: 10)
            #expect(recorder.count == recorded.count, "reads after the end are not noted")
        }
    }

    @Test func prefetchFillsL1SoTheStartNeedsNoOriginFetch() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let setup = try await Setup(dir)
            let store = CountingStore(setup.store)
            store.setDelay(.milliseconds(20))
            let cache = try L1Cache(L1Configuration(memoryCapacity: 64 << 20))
            let image = LazyImage(manifest: setup.manifest, store: store, cache: cache,
                                  configuration: LazyImageConfiguration(readAhead: 0))
            let recorded = Array(setup.storedIndexes.reversed().prefix(12))
            let record = AccessRecord(manifestID: setup.manifest.header.id, chunkCount: setup.manifest.chunks.count,
                                      chunks: recorded.map(UInt32.init))
            await image.prefetch(record, concurrency: 4)
            #expect(store.totalGets == recorded.count)
            #expect(image.statistics.prefetchFetches == recorded.count)
            let c = setup.chunkSize
            for index in recorded {
                let bytes = try await image.read(offset: UInt64(index * c), length: c)
                #expect(bytes == setup.expected(index * c, c))
            }
            #expect(store.totalGets == recorded.count, "every recorded chunk came from L1")
            let stats = image.statistics
            #expect(stats.prefetchHits == recorded.count)
            #expect(stats.chunksFromL1 == recorded.count)
            // A second prefetch of the same record finds everything cached and fetches nothing.
            await image.prefetch(record, concurrency: 4)
            #expect(store.totalGets == recorded.count)
        }
    }

    @Test func demandReadsOvertakeALongPrefetch() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let setup = try await Setup(dir)
            let store = CountingStore(setup.store)
            store.setDelay(.milliseconds(50))
            let cache = try L1Cache(L1Configuration(memoryCapacity: 64 << 20))
            // Two origin fetches at once, of which prefetch may hold one.
            let image = LazyImage(manifest: setup.manifest, store: store, cache: cache,
                                  configuration: LazyImageConfiguration(readAhead: 0, maximumOriginFetches: 2))
            let stored = setup.storedIndexes
            try #require(stored.count >= 16)
            let recorded = Array(stored.prefix(15))
            let wanted = try #require(stored.last)
            let record = AccessRecord(manifestID: setup.manifest.header.id, chunkCount: setup.manifest.chunks.count,
                                      chunks: recorded.map(UInt32.init))
            let prefetch = Task { await image.prefetch(record, concurrency: 8) }
            try await Task.sleep(for: .milliseconds(60))
            let c = setup.chunkSize
            let bytes = try await image.read(offset: UInt64(wanted * c), length: c)
            let fetchedByPrefetchWhenServed = image.statistics.prefetchFetches
            #expect(bytes == setup.expected(wanted * c, c))
            // The prefetch fetches one chunk at a time for about 750 ms; the read waited for one fetch.
            #expect(fetchedByPrefetchWhenServed < recorded.count / 2)
            await prefetch.value
            #expect(image.statistics.prefetchFetches == recorded.count)
            // A recorded chunk read while its prefetch is in flight joins that fetch.
            let name = try #require(setup.manifest.chunks[wanted]).name
            #expect(store.gets(of: name) == 1)
        }
    }
}
