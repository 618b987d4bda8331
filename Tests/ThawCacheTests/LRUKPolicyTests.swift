import Testing
import ThawTestSupport
import ThawCache

/// LRU-K on hand-made traces, with the clock written out: each insert or access is one tick.
@Suite struct LRUKPolicyTests {
    static let noPeriod = LRUKParameters(k: 2, correlatedReferencePeriod: 0)

    /// Evicts everything, returning the order.
    static func drain<P: EvictionPolicy>(_ policy: inout P) -> [P.Key] {
        var order: [P.Key] = []
        while let victim = policy.evict() { order.append(victim.key) }
        return order
    }

    @Test func victimHasTheOldestSecondToLastReference() {
        var policy = LRUKPolicy<String>(Self.noPeriod)
        policy.insert("a", size: 1)  // t1
        policy.insert("b", size: 1)  // t2
        policy.insert("c", size: 1)  // t3
        policy.recordAccess("c")  // t4: c = [4, 3]
        policy.recordAccess("b")  // t5: b = [5, 2]
        policy.recordAccess("a")  // t6: a = [6, 1]
        #expect(policy.history(of: "a") == [6, 1])
        #expect(policy.victim() == "a")
        policy.recordAccess("a")  // t7: a = [7, 6]
        #expect(Self.drain(&policy) == ["b", "c", "a"])
    }

    @Test func keysUsedOnceGoFirstLeastRecentlyUsedFirst() {
        var policy = LRUKPolicy<String>(Self.noPeriod)
        policy.insert("hot", size: 1)  // t1
        policy.recordAccess("hot")  // t2: two references, however long ago
        policy.insert("x", size: 1)  // t3
        policy.insert("y", size: 1)  // t4
        policy.insert("z", size: 1)  // t5
        policy.recordAccess("x")  // t6: x has two references now
        policy.insert("w", size: 1)  // t7
        policy.recordAccess("y")  // t8
        // One reference each: z (t5), w (t7). Two: hot [2,1], x [6,3], y [8,4].
        #expect(Self.drain(&policy) == ["z", "w", "hot", "x", "y"])
    }

    /// The property the cache is for: a long scan of one-off chunks does not flush the hot
    /// set, which LRU loses entirely.
    @Test func scanOfOneOffKeysKeepsTwiceUsedKeys() {
        var lruK = PolicySimulation(policy: LRUKPolicy<Int>(Self.noPeriod), capacity: 10)
        var lru = PolicySimulation(policy: LRUPolicy<Int>(), capacity: 10)
        let hot = Array(0..<5)
        for _ in 0..<2 {
            for key in hot {
                lruK.reference(key, size: 1)
                lru.reference(key, size: 1)
            }
        }
        for key in 1000..<3000 {
            lruK.reference(key, size: 1)
            lru.reference(key, size: 1)
        }
        #expect(hot.allSatisfy { lruK.policy.contains($0) })
        #expect(hot.allSatisfy { !lru.policy.contains($0) })
        #expect(lruK.policy.count == 10)
    }

    @Test func correlatedReferencesCountOnce() {
        var policy = LRUKPolicy<String>(LRUKParameters(k: 2, correlatedReferencePeriod: 3))
        policy.insert("a", size: 1)  // t1
        policy.recordAccess("a")  // t2, within 3 ticks of t1: correlated
        policy.recordAccess("a")  // t3, within 3 ticks of t2: correlated
        #expect(policy.history(of: "a") == [1, 0], "a burst is still one reference")
        policy.insert("b", size: 1)  // t4
        policy.insert("c", size: 1)  // t5
        policy.insert("d", size: 1)  // t6
        policy.insert("e", size: 1)  // t7
        policy.recordAccess("a")  // t8: 5 ticks after t3, a new reference
        // The burst t1...t3 counts as one reference made at its end.
        #expect(policy.history(of: "a") == [8, 3])
    }

    /// A scan that reads each chunk several times in a row, as a block device reads a chunk
    /// in several requests: with a correlated period the scan stays one-off and the hot key
    /// survives; without one every scanned chunk looks used twice.
    @Test func repeatedReadsOfAScannedChunkDoNotMakeItHot() {
        func run(period: UInt64) -> Bool {
            var simulation = PolicySimulation(policy: LRUKPolicy<Int>(LRUKParameters(k: 2, correlatedReferencePeriod: period)),
                                              capacity: 4)
            simulation.reference(0, size: 1)
            for key in 1...10 { simulation.reference(key, size: 1) }  // time passes
            simulation.reference(0, size: 1)  // 0 is used a second time, uncorrelated
            for key in 100..<200 {
                for _ in 0..<3 { simulation.reference(key, size: 1) }
            }
            return simulation.policy.contains(0)
        }
        #expect(run(period: 4))
        #expect(!run(period: 0))
    }

    @Test func keyWithinItsCorrelatedPeriodIsNotChosen() {
        var policy = LRUKPolicy<String>(LRUKParameters(k: 2, correlatedReferencePeriod: 2))
        policy.insert("a", size: 1)  // t1
        policy.insert("b", size: 1)  // t2
        policy.insert("pad", size: 1)  // t3
        policy.recordAccess("a")  // t4: a = [4, 1]
        policy.recordAccess("b")  // t5: b = [5, 2]
        policy.remove("pad")
        policy.insert("new", size: 1)  // t6: one reference, infinite distance
        // The next reference would come at t7; new (t6) and b (t5) are within 2 ticks of it.
        #expect(policy.victim() == "a")
        policy.recordAccess("b")  // t7, correlated
        policy.recordAccess("b")  // t8, correlated
        // At t9 new is 3 ticks old, out of its period: as a one-off it goes first.
        #expect(policy.victim() == "new")
    }

    @Test func retainedHistoryIsResumed() {
        func victimAfterReadmitting(_ parameters: LRUKParameters) -> String? {
            var policy = LRUKPolicy<String>(parameters)
            policy.insert("a", size: 1)  // t1
            policy.recordAccess("a")  // t2: a = [2, 1]
            #expect(policy.remove("a") == 1)
            policy.insert("b", size: 1)  // t3
            policy.insert("a", size: 1)  // t4: back within the retained period?
            return policy.victim()
        }
        // Kept: a resumes [4, 2] and b, a one-off, goes first.
        #expect(victimAfterReadmitting(LRUKParameters(k: 2, correlatedReferencePeriod: 0, retainedInformationPeriod: 10)) == "b")
        // With no room for histories, a starts over as a one-off.
        var forgetful = LRUKPolicy<String>(LRUKParameters(k: 2, correlatedReferencePeriod: 0, retainedLimit: 0))
        forgetful.insert("a", size: 1)
        forgetful.recordAccess("a")
        forgetful.remove("a")
        forgetful.insert("a", size: 1)  // t3
        #expect(forgetful.history(of: "a") == [3, 0])
        #expect(forgetful.retainedCount == 0)

        var expiring = LRUKPolicy<String>(LRUKParameters(k: 2, correlatedReferencePeriod: 0, retainedInformationPeriod: 2))
        expiring.insert("a", size: 1)  // t1
        expiring.recordAccess("a")  // t2
        expiring.remove("a")  // evicted at t2
        expiring.insert("b", size: 1)  // t3
        expiring.insert("c", size: 1)  // t4
        expiring.insert("a", size: 1)  // t5: 3 ticks after eviction, past the period of 2
        #expect(expiring.history(of: "a") == [5, 0])

        var keeping = LRUKPolicy<String>(LRUKParameters(k: 2, correlatedReferencePeriod: 0, retainedInformationPeriod: 3))
        keeping.insert("a", size: 1)  // t1
        keeping.recordAccess("a")  // t2
        keeping.remove("a")  // t2
        keeping.insert("b", size: 1)  // t3
        keeping.insert("c", size: 1)  // t4
        keeping.insert("a", size: 1)  // t5: exactly 3 ticks, still kept
        #expect(keeping.history(of: "a") == [5, 2])
    }

    @Test func retainedHistoriesAreBounded() {
        var simulation = PolicySimulation(
            policy: LRUKPolicy<Int>(LRUKParameters(k: 2, correlatedReferencePeriod: 0, retainedInformationPeriod: 1000, retainedLimit: 5)),
            capacity: 3)
        for key in 0..<100 { simulation.reference(key, size: 1) }
        #expect(simulation.policy.retainedCount == 5)
        var expiring = PolicySimulation(
            policy: LRUKPolicy<Int>(LRUKParameters(k: 2, correlatedReferencePeriod: 0, retainedInformationPeriod: 4, retainedLimit: 1000)),
            capacity: 3)
        for key in 0..<100 { expiring.reference(key, size: 1) }
        #expect(expiring.policy.retainedCount <= 5)
    }

    @Test func kOfOneIsLRU() {
        var lruK = PolicySimulation(policy: LRUKPolicy<Int>(LRUKParameters(k: 1, correlatedReferencePeriod: 0)), capacity: 7)
        var lru = PolicySimulation(policy: LRUPolicy<Int>(), capacity: 7)
        var generator = SeededGenerator(seed: 1)
        for _ in 0..<5000 {
            let key = Int.random(in: 0..<20, using: &generator)
            #expect(lruK.reference(key, size: 1) == lru.reference(key, size: 1))
        }
        #expect(lruK.misses == lru.misses)
    }
}
