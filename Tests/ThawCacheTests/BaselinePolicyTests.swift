import Testing
import ThawTestSupport
import ThawCache

@Suite struct BaselinePolicyTests {
    @Test func lruEvictsTheLeastRecentlyUsed() {
        var policy = LRUPolicy<String>()
        for key in ["a", "b", "c", "d"] { policy.insert(key, size: 1) }
        policy.recordAccess("a")
        policy.recordAccess("c")
        #expect(policy.remove("d") == 1)
        #expect(policy.remove("d") == nil)
        #expect(LRUKPolicyTests.drain(&policy) == ["b", "a", "c"])
        #expect(policy.bytes == 0 && policy.count == 0)
    }

    @Test func fifoIgnoresUse() {
        var policy = FIFOPolicy<String>()
        for key in ["a", "b", "c"] { policy.insert(key, size: 2) }
        policy.recordAccess("a")
        #expect(policy.bytes == 6)
        #expect(LRUKPolicyTests.drain(&policy) == ["a", "b", "c"])
    }

    /// Objects of random sizes through every policy: the byte count matches what is resident
    /// and never passes the capacity.
    @Test(arguments: [EvictionPolicyChoice.default, .lru, .fifo])
    func byteBoundHolds(policy: EvictionPolicyChoice) {
        check(policy.makePolicy(for: Int.self))
    }

    private func check<Policy: EvictionPolicy<Int>>(_ policy: Policy) {
        var simulation = PolicySimulation(policy: policy, capacity: 10_000)
        var generator = SeededGenerator(seed: 7)
        var sizes: [Int: Int] = [:]
        var worst = 0
        for _ in 0..<20_000 {
            let key = Int.random(in: 0..<300, using: &generator)
            let size = sizes[key] ?? Int.random(in: 1...1500, using: &generator)
            sizes[key] = size
            simulation.reference(key, size: size)
            worst = max(worst, simulation.policy.bytes)
        }
        let resident = sizes.filter { simulation.policy.contains($0.key) }
        #expect(worst <= 10_000)
        #expect(simulation.policy.bytes == resident.values.reduce(0, +))
        #expect(simulation.policy.count == resident.count)
        #expect(simulation.hits + simulation.misses == 20_000)
    }

    @Test func objectLargerThanTheCacheIsNotAdmitted() {
        var simulation = PolicySimulation(policy: LRUPolicy<Int>(), capacity: 10)
        simulation.reference(1, size: 4)
        simulation.reference(2, size: 11)
        #expect(simulation.policy.contains(1) && !simulation.policy.contains(2))
    }
}
