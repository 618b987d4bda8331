import Synchronization
import Testing
@testable import ThawLambdaAPI

/// A clock the test moves by hand.
final class ManualClock: Sendable {
    private let seconds = Mutex(1000.0)
    var now: Double { seconds.withLock { $0 } }
    func advance(_ by: Double) { seconds.withLock { $0 += by } }
}

struct KeepAlivePolicyTests {
    let policy = KeepAlivePolicy(initial: 60, minimum: 1, maximum: 3600)

    func history(gaps: [Double]) -> ArrivalHistory {
        var history = ArrivalHistory()
        var time = 0.0
        history.record(at: time)
        for gap in gaps {
            time += gap
            history.record(at: time)
        }
        return history
    }

    @Test func withoutAPatternTheOperatorsKeepAliveHolds() {
        #expect(policy.keepAlive(for: ArrivalHistory()) == 60)
        #expect(policy.keepAlive(for: history(gaps: [2, 2, 2])) == 60)
    }

    @Test func frequentFunctionsAreKeptBrieflyAndRareOnesLong() {
        let frequent = policy.keepAlive(for: history(gaps: Array(repeating: 2, count: 50)))
        #expect(abs(frequent - 2.2) < 1e-9)
        let hourly = policy.keepAlive(for: history(gaps: Array(repeating: 1800, count: 20)))
        #expect(abs(hourly - 1980) < 1e-9)
        // The 99th percentile: one long gap in a hundred short ones does not set the keep-alive,
        // two do.
        let oneOutlier = policy.keepAlive(for: history(gaps: Array(repeating: 2, count: 99) + [500]))
        #expect(abs(oneOutlier - 2.2) < 1e-9)
        let twoOutliers = policy.keepAlive(for: history(gaps: Array(repeating: 2, count: 98) + [500, 500]))
        #expect(abs(twoOutliers - 550) < 1e-9)
    }

    @Test func aLowerWarmTargetKeepsInstancesForLess() {
        // Gaps of 1 s to 100 s: a 50% target keeps for the median gap, a 90% target for the 90th.
        let gaps = (1...100).map(Double.init)
        let half = KeepAlivePolicy(initial: 60, minimum: 1, maximum: 3600, percentile: 0.5)
        let most = KeepAlivePolicy(initial: 60, minimum: 1, maximum: 3600, percentile: 0.9)
        #expect(abs(half.keepAlive(for: history(gaps: gaps)) - 55) < 1e-9)
        #expect(abs(most.keepAlive(for: history(gaps: gaps)) - 99) < 1e-9)
    }

    @Test func theKeepAliveStaysWithinItsBounds() {
        #expect(policy.keepAlive(for: history(gaps: Array(repeating: 0.01, count: 20))) == 1)
        #expect(policy.keepAlive(for: history(gaps: Array(repeating: 10_000, count: 20))) == 3600)
    }

    @Test func theHistoryFollowsChange() {
        let changed = history(gaps: Array(repeating: 1000, count: 300) + Array(repeating: 3, count: ArrivalHistory.capacity))
        #expect(changed.gaps.count == ArrivalHistory.capacity)
        #expect(abs(policy.keepAlive(for: changed) - 3.3) < 1e-9)
    }
}

struct InstancePoolTests {
    /// An instance is a number here; the pool only keeps and hands back.
    /// Instances hold 100 bytes each; negative ones can no longer serve.
    func pool(admission: Int = 8, perFunction: Int = 2, budget: UInt64? = nil, clock: ManualClock) -> InstancePool<Int> {
        InstancePool(limits: .init(admission: admission, perFunction: perFunction, idleMemoryBudget: budget),
                     policy: KeepAlivePolicy(initial: 10, minimum: 1, maximum: 100), clock: { clock.now },
                     memory: { _ in 100 }, usable: { $0 >= 0 })
    }

    func isWarm(_ lease: InstancePool<Int>.Lease, _ instance: Int) -> Bool {
        if case .warm(let got) = lease { return got == instance }
        return false
    }

    func isCold(_ lease: InstancePool<Int>.Lease) -> Bool {
        if case .cold = lease { return true }
        return false
    }

    @Test func aReleasedInstanceServesTheNextInvocationOfTheSameCode() async throws {
        let clock = ManualClock()
        let pool = pool(clock: clock)
        #expect(isCold(try await pool.acquire("f", code: "a").lease))
        #expect(await pool.release("f", code: "a", instance: 1) == [])
        #expect(await pool.census == .init(busy: 0, idle: 1, idleMemory: 100, unstopped: 0))
        #expect(isWarm(try await pool.acquire("f", code: "a").lease, 1))
        #expect(await pool.census == .init(busy: 1, idle: 0, idleMemory: 0, unstopped: 0))
        // New code: the idle instance of the old one is handed back, and the start is cold.
        _ = await pool.release("f", code: "a", instance: 1)
        let (lease, stale) = try await pool.acquire("f", code: "b")
        #expect(isCold(lease))
        #expect(stale == [1])
        #expect(await pool.census.unstopped == 1)
        await pool.confirmStopped(1)
        #expect(await pool.census.unstopped == 0)
        // An idle instance that can no longer serve is handed back too.
        _ = await pool.release("f", code: "b", instance: -1)
        let (again, unusable) = try await pool.acquire("f", code: "b")
        #expect(isCold(again))
        #expect(unusable == [-1])
    }

    @Test func concurrentInvocationsGetSeparateInstancesUpToTheLimits() async throws {
        let clock = ManualClock()
        let pool = pool(admission: 3, perFunction: 2, clock: clock)
        _ = try await pool.acquire("f", code: "a")
        _ = try await pool.acquire("f", code: "a")
        await #expect(throws: LambdaError.self) { try await pool.acquire("f", code: "a") }
        do {
            _ = try await pool.acquire("f", code: "a")
            Issue.record("a third invocation of f was admitted past its limit of 2")
        } catch {
            #expect(error.status == 429)
            #expect(error.retryAfterSeconds != nil)
            #expect(error.message.contains("ReservedFunctionConcurrentInvocationLimitExceeded"))
        }
        _ = try await pool.acquire("g", code: "a")
        do {
            _ = try await pool.acquire("h", code: "a")
            Issue.record("a fourth invocation was admitted past the agent's limit of 3")
        } catch {
            #expect(error.status == 429 && error.message.contains("3 invocations at once"))
        }
        #expect(await pool.census.busy == 3)
        #expect(await pool.releaseRetired("g", instance: 9) == [9])
        #expect(await pool.census == .init(busy: 2, idle: 0, idleMemory: 0, unstopped: 1))
        _ = await pool.release("f", code: "a", instance: 7)
        #expect(isWarm(try await pool.acquire("f", code: "a").lease, 7))
    }

    @Test func idleInstancesExpireAfterTheirFunctionsKeepAlive() async throws {
        let clock = ManualClock()
        let pool = pool(clock: clock)
        _ = try await pool.acquire("f", code: "a")
        _ = await pool.release("f", code: "a", instance: 1)
        clock.advance(9)
        #expect(await pool.expire() == [])
        clock.advance(1.5)
        #expect(await pool.expire() == [1], "idle past the initial keep-alive of 10 s")
        #expect(await pool.census.idle == 0)

        // A function invoked every 2 s gets a keep-alive of 2.2 s once it has a pattern.
        for _ in 0..<10 {
            clock.advance(2)
            _ = try await pool.acquire("g", code: "a")
            _ = await pool.release("g", code: "a", instance: 2)
        }
        #expect(abs(await pool.keepAlive(of: "g") - 2.2) < 1e-9)
        clock.advance(2)
        #expect(await pool.expire() == [])
        clock.advance(0.5)
        #expect(await pool.expire() == [2])
    }

    @Test func theMemoryBudgetStopsTheLongestIdleFirst() async throws {
        let clock = ManualClock()
        let pool = pool(budget: 250, clock: clock)
        for (function, instance) in [("f", 1), ("g", 2), ("h", 3)] {
            _ = try await pool.acquire(function, code: "a")
            clock.advance(1)
            let evicted = await pool.release(function, code: "a", instance: instance)
            #expect(evicted == (instance == 3 ? [1] : []))
        }
        #expect(await pool.census.idle == 2)
        #expect(await pool.census.idleMemory == 200)
    }

    @Test func aRefusedLeaseHandsNothingBack() async throws {
        let clock = ManualClock()
        let pool = pool(admission: 8, perFunction: 1, clock: clock)
        _ = try await pool.acquire("f", code: "a")
        _ = await pool.release("f", code: "a", instance: 1)
        _ = try await pool.acquire("f", code: "a")  // takes instance 1
        _ = await pool.release("f", code: "old", instance: 2)  // an idle instance of old code
        _ = try await pool.acquire("f", code: "b")
        do {
            _ = try await pool.acquire("f", code: "b")
            Issue.record("a second invocation was admitted past the limit of 1")
        } catch {
            #expect(error.status == 429)
        }
        #expect(await pool.census.unstopped == 1, "only the granted lease handed back instance 2")
    }

    @Test func afterCloseNothingGoesIdle() async throws {
        let clock = ManualClock()
        let pool = pool(clock: clock)
        _ = try await pool.acquire("f", code: "a")
        _ = try await pool.acquire("g", code: "a")
        _ = await pool.release("f", code: "a", instance: 1)
        #expect(await pool.close() == [1])
        #expect(await pool.release("g", code: "a", instance: 2) == [2])
        #expect(await pool.census == .init(busy: 0, idle: 0, idleMemory: 0, unstopped: 2))
    }
}
