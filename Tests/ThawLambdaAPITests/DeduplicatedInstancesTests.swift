import Testing
@testable import ThawLambdaAPI

struct DeduplicatedInstancesTests {
    let clock = ManualClock()

    func instances(initial: Double = 600) -> DeduplicatedInstances<String> {
        let clock = clock
        return DeduplicatedInstances(policy: KeepAlivePolicy(initial: initial, minimum: 10, maximum: 86400), clock: { clock.now })
    }

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

    @Test func oneSnapshotIsTakenPerFunctionAndCodeAndServesThatCodeOnly() async {
        let kept = instances()
        #expect(await kept.snapshot(of: "f", code: "a") == nil)
        #expect(await kept.beginTaking("f", code: "a"))
        // A second start while the first snapshot is under way takes none.
        #expect(await kept.beginTaking("f", code: "a") == false)
        #expect(await kept.finishTaking("f", code: "a", snapshot: "snap-a", storedBytes: 100).isEmpty)
        #expect(await kept.snapshot(of: "f", code: "a") == "snap-a")
        #expect(await kept.snapshot(of: "f", code: "b") == nil)
        #expect(await kept.beginTaking("f", code: "a") == false)
        // New code: its snapshot replaces the old one, which comes back to delete.
        #expect(await kept.beginTaking("f", code: "b"))
        #expect(await kept.finishTaking("f", code: "b", snapshot: "snap-b", storedBytes: 50) == ["snap-a"])
        #expect(await kept.snapshot(of: "f", code: "b") == "snap-b")
        #expect(await kept.census == .init(snapshots: 1, storedBytes: 50, taking: 0))
    }

    @Test func aFailedSnapshotLeavesTheFunctionColdAndFreeToTryAgain() async {
        let kept = instances()
        #expect(await kept.beginTaking("f", code: "a"))
        #expect(await kept.finishTaking("f", code: "a", snapshot: nil, storedBytes: 0).isEmpty)
        #expect(await kept.snapshot(of: "f", code: "a") == nil)
        #expect(await kept.beginTaking("f", code: "a"))
    }

    @Test func aSnapshotFinishedAfterItsFunctionWasDrainedComesBackToDelete() async {
        let kept = instances()
        #expect(await kept.beginTaking("f", code: "a"))
        #expect(await kept.drain("f").isEmpty)
        #expect(await kept.finishTaking("f", code: "a", snapshot: "late", storedBytes: 1) == ["late"])
        #expect(await kept.snapshot(of: "f", code: "a") == nil)
    }

    @Test func snapshotsExpireAfterTheKeepDedupUnlessUsed() async {
        let kept = instances(initial: 600)
        for name in ["used", "unused"] {
            #expect(await kept.beginTaking(name, code: "c"))
            _ = await kept.finishTaking(name, code: "c", snapshot: name, storedBytes: 10)
        }
        clock.advance(400)
        #expect(await kept.snapshot(of: "used", code: "c") == "used")
        #expect(await kept.expire(histories: [:]).isEmpty)
        clock.advance(250)
        let expired = await kept.expire(histories: [:])
        #expect(expired.map(\.function) == ["unused"])
        #expect(await kept.snapshot(of: "unused", code: "c") == nil)
        #expect(await kept.census.snapshots == 1)
    }

    @Test func theKeepDedupFollowsTheFunctionsArrivals() async {
        let kept = instances(initial: 600)
        #expect(await kept.beginTaking("frequent", code: "c"))
        _ = await kept.finishTaking("frequent", code: "c", snapshot: "s", storedBytes: 0)
        // Invoked every 20 s: kept for the longest gap seen, times 1.1 (22 s), not 600 s.
        let histories = ["frequent": history(gaps: Array(repeating: 20, count: 30))]
        #expect(abs(await kept.keepDedup(histories["frequent"]!) - 22) < 1e-9)
        clock.advance(21)
        #expect(await kept.expire(histories: histories).isEmpty)
        clock.advance(2)
        #expect(await kept.expire(histories: histories).map(\.function) == ["frequent"])
    }

    @Test func closingKeepsNothingAndSaysWhatItHeld() async {
        let kept = instances()
        #expect(await kept.beginTaking("f", code: "c"))
        _ = await kept.finishTaking("f", code: "c", snapshot: "s", storedBytes: 0)
        #expect(await kept.close() == ["f"])
        #expect(await kept.beginTaking("g", code: "c") == false)
        #expect(await kept.census.snapshots == 0)
    }
}

struct InstancePoolAdoptionTests {
    @Test func anAdoptedInstanceServesTheNextLeaseAndCountsAgainstTheBudget() async throws {
        let clock = ManualClock()
        let pool = InstancePool<Int>(limits: .init(admission: 4, perFunction: 2, idleMemoryBudget: 150),
                                     policy: KeepAlivePolicy(initial: 60, minimum: 1, maximum: 3600),
                                     clock: { clock.now }, memory: { _ in 100 })
        #expect(await pool.adopt("f", code: "c", instance: 1).isEmpty)
        #expect(await pool.idleCount(of: "f") == 1)
        clock.advance(1)
        // Over the budget: the one idle longest goes.
        #expect(await pool.adopt("f", code: "c", instance: 2) == [1])
        let (lease, stale) = try await pool.acquire("f", code: "c")
        #expect(stale.isEmpty)
        guard case .warm(let instance) = lease else { Issue.record("expected the adopted instance"); return }
        #expect(instance == 2)
        #expect(await pool.histories()["f"]?.lastArrival != nil)
        _ = await pool.close()
        #expect(await pool.adopt("f", code: "c", instance: 3) == [3])
    }
}
