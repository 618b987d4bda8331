import Testing
import ThawTestSupport
import ThawCache

/// LRU-K written the slow, obvious way: every victim is found by looking at every key. The
/// policy's heap and list must choose exactly the same victims on any trace.
struct LRUKModel {
    struct State {
        var history: [UInt64]
        var lastUse: UInt64
        var size: Int
    }

    let parameters: LRUKParameters
    var clock: UInt64 = 0
    var resident: [Int: State] = [:]
    /// Evicted keys' histories; `order` counts evictions, as several can share one tick.
    var retained: [Int: (history: [UInt64], lastUse: UInt64, evictedAt: UInt64, order: Int)] = [:]
    var evictions = 0

    var bytes: Int { resident.values.reduce(0) { $0 + $1.size } }

    mutating func reference(_ state: inout State, at now: UInt64) {
        let previous = state.lastUse
        state.lastUse = now
        guard now - previous > parameters.correlatedReferencePeriod else { return }
        let burst = previous - state.history[0]
        for i in stride(from: parameters.k - 1, to: 0, by: -1) {
            state.history[i] = state.history[i - 1] == 0 ? 0 : state.history[i - 1] + burst
        }
        state.history[0] = now
    }

    mutating func insert(_ key: Int, size: Int) {
        clock += 1
        var state = State(history: Array(repeating: 0, count: parameters.k), lastUse: clock, size: size)
        state.history[0] = clock
        if let kept = retained.removeValue(forKey: key), clock - kept.evictedAt <= parameters.retainedInformationPeriod {
            state.history = kept.history
            state.lastUse = kept.lastUse
            reference(&state, at: clock)
        }
        resident[key] = state
        prune()
    }

    mutating func access(_ key: Int) {
        guard var state = resident[key] else { return }
        clock += 1
        reference(&state, at: clock)
        resident[key] = state
    }

    mutating func remove(_ key: Int) {
        guard let state = resident.removeValue(forKey: key) else { return }
        if parameters.retainedLimit > 0 {
            evictions += 1
            retained[key] = (state.history, state.lastUse, clock, evictions)
        }
        prune()
    }

    mutating func prune() {
        retained = retained.filter { clock - $0.value.evictedAt <= parameters.retainedInformationPeriod }
        while retained.count > parameters.retainedLimit {
            let oldest = retained.min { $0.value.order < $1.value.order }!
            retained[oldest.key] = nil
        }
    }

    func victim() -> Int? {
        let now = clock + 1
        let eligible = resident.filter { now - $0.value.lastUse > parameters.correlatedReferencePeriod }
        let pool = eligible.isEmpty ? resident : eligible
        let oneOff = pool.filter { $0.value.history[parameters.k - 1] == 0 }
        if let key = oneOff.min(by: { $0.value.lastUse < $1.value.lastUse })?.key { return key }
        return pool.min { a, b in
            let ra = a.value.history[parameters.k - 1], rb = b.value.history[parameters.k - 1]
            return ra != rb ? ra < rb : a.value.lastUse < b.value.lastUse
        }?.key
    }
}

@Suite struct LRUKModelTests {
    static let cases: [LRUKParameters] = [
        LRUKParameters(k: 2, correlatedReferencePeriod: 0, retainedInformationPeriod: 1000, retainedLimit: 1000),
        LRUKParameters(k: 2, correlatedReferencePeriod: 3, retainedInformationPeriod: 200, retainedLimit: 20),
        LRUKParameters(k: 2, correlatedReferencePeriod: 8, retainedInformationPeriod: 50, retainedLimit: 0),
        LRUKParameters(k: 3, correlatedReferencePeriod: 2, retainedInformationPeriod: 500, retainedLimit: 30),
        LRUKParameters(k: 1, correlatedReferencePeriod: 1, retainedInformationPeriod: 10, retainedLimit: 5),
    ]

    @Test(arguments: cases)
    func sameVictimsAsTheObviousAlgorithm(parameters: LRUKParameters) {
        for seed in UInt64(1)...4 {
            var generator = SeededGenerator(seed: seed)
            var policy = LRUKPolicy<Int>(parameters)
            var model = LRUKModel(parameters: parameters)
            let capacity = 24
            var disagreements = 0
            for step in 0..<6000 {
                // Hot keys, warm keys and a long tail, with runs of repeated references.
                let roll = Int.random(in: 0..<100, using: &generator)
                let key = roll < 50 ? Int.random(in: 0..<8, using: &generator)
                    : roll < 80 ? Int.random(in: 8..<40, using: &generator) : Int.random(in: 40..<400, using: &generator)
                let size = 1 + key % 3
                for _ in 0..<(roll % 7 == 0 ? 3 : 1) {
                    if policy.contains(key) {
                        policy.recordAccess(key)
                        model.access(key)
                    } else {
                        while policy.bytes + size > capacity {
                            let expected = model.victim()
                            let victim = policy.evict()
                            if victim?.key != expected { disagreements += 1 }
                            guard let victim else { break }
                            model.remove(victim.key)
                        }
                        policy.insert(key, size: size)
                        model.insert(key, size: size)
                    }
                }
                if step % 500 == 0 {
                    #expect(policy.bytes == model.bytes)
                    #expect(policy.retainedCount == model.retained.count)
                }
            }
            #expect(disagreements == 0, "seed \(seed)")
            #expect(policy.count == model.resident.count)
            #expect(model.resident.keys.allSatisfy { policy.history(of: $0) == model.resident[$0]!.history })
        }
    }
}
