import Testing
import ThawTestSupport
import ThawCache
import ThawSeal

@Suite struct MemoryTierTests {
    @Test func holdsChunksAndCounts() {
        var tier = MemoryTier(capacity: 3 * 4096, policy: .default)
        let chunks = (0..<4).map { TestChunks.chunk($0) }
        #expect(tier.get(chunks[0].name) == nil)
        for chunk in chunks.prefix(3) { tier.put(chunk.name, chunk.bytes) }
        #expect(tier.get(chunks[0].name) == chunks[0].bytes)
        #expect(tier.put(chunks[1].name, chunks[1].bytes).isEmpty, "a chunk already held is not stored twice")
        let evicted = tier.put(chunks[3].name, chunks[3].bytes)
        #expect(evicted.count == 1)
        #expect(tier.bytes == 3 * 4096 && tier.count == 3)
        let stats = tier.statistics
        #expect(stats.hits == 1 && stats.misses == 1 && stats.hitBytes == 4096)
        #expect(stats.insertions == 4 && stats.evictions == 1)
        #expect(stats.bytes == 3 * 4096 && stats.entries == 3 && stats.capacity == 3 * 4096)
        tier.remove(chunks[3].name)
        #expect(!tier.contains(chunks[3].name) && tier.bytes == 2 * 4096)
    }

    @Test func chunkLargerThanTheTierIsNotHeld() {
        var tier = MemoryTier(capacity: 1000, policy: .lru)
        let chunk = TestChunks.chunk(1, size: 1001)
        tier.put(chunk.name, chunk.bytes)
        #expect(!tier.contains(chunk.name) && tier.bytes == 0)
    }

    @Test(arguments: [EvictionPolicyChoice.default, .lru, .fifo])
    func byteBoundHoldsWithMixedSizes(policy: EvictionPolicyChoice) {
        let capacity = 64 * 1024
        var tier = MemoryTier(capacity: capacity, policy: policy)
        var generator = SeededGenerator(seed: 3)
        let chunks = (0..<60).map { TestChunks.chunk($0, size: [1024, 4096, 8192, 16384][$0 % 4]) }
        for _ in 0..<3000 {
            let chunk = chunks[Int.random(in: 0..<chunks.count, using: &generator)]
            if let bytes = tier.get(chunk.name) {
                #expect(bytes == chunk.bytes)
            } else {
                tier.put(chunk.name, chunk.bytes)
            }
            #expect(tier.bytes <= capacity)
        }
        let held = chunks.filter { tier.contains($0.name) }
        #expect(tier.bytes == held.reduce(0) { $0 + $1.bytes.count })
    }
}
