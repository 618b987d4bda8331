import Foundation
import Testing
import ThawMetadata
import ThawSeal
import ThawTestSupport

/// One suite, run against both implementations: SQLite in a temporary file, and a real
/// PostgreSQL server started for each test.
@Suite(.timeLimit(.minutes(10))) struct MetadataStoreTests {
    enum Backend: String, CaseIterable, CustomTestStringConvertible {
        case sqlite, postgres
        var testDescription: String { rawValue }
    }

    /// A moment with whole milliseconds, as the tables keep them.
    static let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    /// Opens a fresh store of `backend` (twice over, when `second` is set: two independent
    /// clients of one database) and closes everything after `body`.
    static func withStores(_ backend: Backend, _ body: (any MetadataStore, any MetadataStore, MetadataLocation) async throws -> Void) async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            var server: PostgresServer?
            let location: MetadataLocation
            switch backend {
            case .sqlite:
                location = .sqlite(path: dir + "/metadata.sqlite")
            case .postgres:
                let started = try await PostgresServer.start()
                server = started
                location = try MetadataLocation(parsing: try await started.createDatabase("thaw_test"))
            }
            let first = try await location.open(now: t0)
            let second: any MetadataStore
            do {
                second = try await location.open(now: t0)
            } catch {
                await first.close()
                throw error
            }
            do {
                try await body(first, second, location)
            } catch {
                await first.close()
                await second.close()
                throw error
            }
            await first.close()
            await second.close()
            withExtendedLifetime(server) {}
        }
    }

    static func root(_ id: String) throws -> RootID { try RootID(id) }

    @Test(arguments: Backend.allCases) func theInitialRootIsMadeOnceAndRotationRetiresTheActiveOne(_ backend: Backend) async throws {
        try await Self.withStores(backend) { store, other, location in
            // Opening again (`other`, and a third time here) neither adds a root nor fails.
            let third = try await location.open(now: Self.t0.addingTimeInterval(60))
            await third.close()
            var roots = try await store.roots()
            #expect(roots.map(\.id) == [RootID.initial])
            #expect(roots[0].state == .active && roots[0].createdAt == Self.t0 && roots[0].lastReadAt == nil && roots[0].alarm == nil)
            #expect(try await other.activeRoot().id == .initial)

            let later = Self.t0.addingTimeInterval(3600)
            try await store.rotate(to: try Self.root("r0002"), now: later)
            roots = try await other.roots()
            #expect(roots.map(\.id.value) == ["r0001", "r0002"])
            #expect(roots.map(\.state) == [.retired, .active])
            #expect(roots[0].stateChangedAt == later)
            #expect(try await store.activeRoot().id.value == "r0002")
            await #expect { try await other.rotate(to: try Self.root("r0002"), now: later) } throws: {
                ($0 as? MetadataError)?.kind == .conflict && "\($0)".contains("r0002")
            }
            #expect(try await store.roots().filter { $0.state == .active }.count == 1)

            // Transitions are compare-and-set: only the first of two identical moves happens.
            #expect(try await store.transition(.initial, from: .retired, to: .expired, now: later))
            #expect(try await other.transition(.initial, from: .retired, to: .expired, now: later) == false)
            #expect(try await store.root(.initial)?.state == .expired)
            #expect(try await store.root(try Self.root("nope")) == nil)
        }
    }

    @Test(arguments: Backend.allCases) func concurrentRotationsLeaveExactlyOneActiveRoot(_ backend: Backend) async throws {
        try await Self.withStores(backend) { store, other, _ in
            for round in 0..<5 {
                async let a: Bool = (try? await store.rotate(to: try Self.root("a\(round)"), now: Self.t0)) != nil
                async let b: Bool = (try? await other.rotate(to: try Self.root("b\(round)"), now: Self.t0)) != nil
                let (x, y) = await (a, b)
                #expect(x || y, "round \(round): neither rotation happened")
                let active = try await store.roots().filter { $0.state == .active }
                #expect(active.count == 1, "round \(round): \(active.map(\.id))")
                #expect(try await other.activeRoot().id == active.first?.id)
            }
        }
    }

    @Test(arguments: Backend.allCases) func aReadOfAnExpiredRootRaisesAnAlarmUntilCleared(_ backend: Backend) async throws {
        try await Self.withStores(backend) { store, other, _ in
            let t1 = Self.t0.addingTimeInterval(10), t2 = Self.t0.addingTimeInterval(20)
            var root = try #require(try await store.noteRead(root: .initial, at: t2, by: "worker-a"))
            #expect(root.lastReadAt == t2 && root.alarm == nil, "a read of an active root is no alarm")
            root = try #require(try await other.noteRead(root: .initial, at: t1, by: "worker-b"))
            #expect(root.lastReadAt == t2, "an older read report does not move the mark back")

            try await store.rotate(to: try Self.root("r0002"), now: t2)
            #expect(try await store.transition(.initial, from: .retired, to: .expired, now: t2))
            let t3 = Self.t0.addingTimeInterval(30)
            root = try #require(try await other.noteRead(root: .initial, at: t3, by: "worker-b"))
            let alarm = try #require(root.alarm)
            #expect(alarm.contains("worker-b") && root.lastReadAt == t3)
            // A second read keeps the first alarm.
            _ = try await store.noteRead(root: .initial, at: t3.addingTimeInterval(1), by: "worker-c")
            #expect(try await store.root(.initial)?.alarm == alarm)
            #expect(try await store.clearAlarm(root: .initial))
            #expect(try await other.clearAlarm(root: .initial) == false)
            #expect(try await other.root(.initial)?.alarm == nil)
            #expect(try await store.noteRead(root: try Self.root("r9999"), at: t3, by: "x") == nil)
        }
    }

    @Test(arguments: Backend.allCases) func aStartUsingAManifestKeepsItsRetiredRootFromExpiring(_ backend: Backend) async throws {
        try await Self.withStores(backend) { store, other, _ in
            let r2 = try Self.root("r0002")
            let t1 = Self.t0.addingTimeInterval(10)
            // A use in the active root, renewed by a second client: one row, the later end.
            var root = try #require(try await store.beginUse(manifest: "aaaa", root: .initial, by: "agent-1", until: Self.t0.addingTimeInterval(100)))
            #expect(root.state == .active)
            _ = try await other.beginUse(manifest: "aaaa", root: .initial, by: "agent-1", until: Self.t0.addingTimeInterval(300))
            _ = try await other.beginUse(manifest: "bbbb", root: .initial, by: "agent-2", until: Self.t0.addingTimeInterval(200))
            #expect(try await store.uses(in: .initial, now: t1) == [
                UseRecord(manifestID: "aaaa", root: .initial, holder: "agent-1", expiresAt: Self.t0.addingTimeInterval(300)),
                UseRecord(manifestID: "bbbb", root: .initial, holder: "agent-2", expiresAt: Self.t0.addingTimeInterval(200)),
            ])
            #expect(try await store.uses(in: r2, now: t1).isEmpty)

            try await store.rotate(to: r2, now: t1)
            #expect(try await other.expireUnlessInUse(.initial, now: t1) == false, "two starts use the retired root")
            try await store.endUse(manifest: "bbbb", root: .initial, by: "agent-2")
            try await store.endUse(manifest: "bbbb", root: .initial, by: "agent-2")  // again: nothing left to end
            #expect(try await other.expireUnlessInUse(.initial, now: Self.t0.addingTimeInterval(250)) == false, "agent-1's use runs to 300 s")
            #expect(try await other.root(.initial)?.state == .retired)
            // agent-1 died without ending its use: once the use runs out, the root expires.
            #expect(try await other.uses(in: nil, now: Self.t0.addingTimeInterval(300)).isEmpty)
            #expect(try await other.expireUnlessInUse(.initial, now: Self.t0.addingTimeInterval(300)))
            #expect(try await store.root(.initial)?.state == .expired)
            #expect(try await store.expireUnlessInUse(r2, now: Self.t0.addingTimeInterval(300)) == false, "only a retired root expires")
            // A start that begins on an expired root learns it from the answer.
            root = try #require(try await other.beginUse(manifest: "aaaa", root: .initial, by: "agent-3", until: Self.t0.addingTimeInterval(900)))
            #expect(root.state == .expired)
            #expect(try await store.uses(in: .initial, now: Self.t0.addingTimeInterval(400)).map(\.holder) == ["agent-3"])
        }
    }

    @Test(arguments: Backend.allCases) func manifestsAndFunctionNames(_ backend: Backend) async throws {
        try await Self.withStores(backend) { store, other, _ in
            let tenant = Tenant.default
            let a = ManifestRecord(id: "aaaa", root: .initial, tenant: tenant, imageSize: 5_000_000_000, chunkCount: 9537, createdAt: Self.t0)
            let b = ManifestRecord(id: "bbbb", root: .initial, tenant: tenant, imageSize: 1 << 20, chunkCount: 2,
                                   createdAt: Self.t0.addingTimeInterval(1))
            try await store.addManifest(a)
            try await other.addManifest(a)  // again: no second row, no error
            try await store.addManifest(b)
            #expect(try await other.manifests(in: .initial) == [a, b])
            #expect(try await other.manifests(in: try Self.root("r0002")).isEmpty)
            #expect(try await other.manifests(in: nil).count == 2)
            // By id: exact, in any root, and a prefix is not an id.
            let copied = ManifestRecord(id: "bbbb", root: try Self.root("r0002"), tenant: tenant, imageSize: 1 << 20, chunkCount: 2,
                                        createdAt: Self.t0.addingTimeInterval(2))
            try await store.addManifest(copied)
            #expect(try await other.manifests(withID: "bbbb") == [b, copied])
            #expect(try await other.manifests(withID: "aaaa") == [a])
            #expect(try await other.manifests(withID: "aa").isEmpty)
            try await store.removeManifest(id: "bbbb", root: try Self.root("r0002"))

            let name = try FunctionName("hello-py")
            try await store.setFunction(FunctionRecord(name: name, manifestID: "aaaa", root: .initial, tenant: tenant, updatedAt: Self.t0))
            #expect(try await other.function(named: name)?.manifestID == "aaaa")
            let moved = FunctionRecord(name: name, manifestID: "bbbb", root: .initial, tenant: tenant, updatedAt: Self.t0.addingTimeInterval(5))
            try await other.setFunction(moved)
            #expect(try await store.function(named: name) == moved)
            try await store.setFunction(FunctionRecord(name: try FunctionName("Another.fn_1"), manifestID: "aaaa", root: .initial,
                                                       tenant: tenant, updatedAt: Self.t0))
            #expect(try await other.functions().map(\.name.value) == ["Another.fn_1", "hello-py"])

            // Settings live beside the name, are replaced whole, and go with it.
            #expect(try await store.functionSettings(named: name) == nil)
            try await store.setFunctionSettings(#"{"Timeout":3}"#, for: name)
            try await other.setFunctionSettings(#"{"Timeout":9,"Description":"é ✓"}"#, for: name)
            #expect(try await store.functionSettings(named: name) == #"{"Timeout":9,"Description":"é ✓"}"#)
            #expect(try await store.removeFunction(named: name))
            #expect(try await other.functionSettings(named: name) == nil)
            #expect(try await other.removeFunction(named: name) == false)
            #expect(try await other.function(named: name) == nil)

            try await store.removeManifest(id: "aaaa", root: .initial)
            #expect(try await other.manifests(in: .initial) == [b])
        }
    }

    @Test(arguments: Backend.allCases) func oneLeaseHolderAtATime(_ backend: Backend) async throws {
        try await Self.withStores(backend) { store, other, _ in
            #expect(try await store.acquireLease("gc", holder: "a", now: Self.t0, duration: .seconds(60)))
            #expect(try await other.acquireLease("gc", holder: "b", now: Self.t0.addingTimeInterval(30), duration: .seconds(60)) == false)
            #expect(try await store.acquireLease("gc", holder: "a", now: Self.t0.addingTimeInterval(50), duration: .seconds(60)), "renewal")
            #expect(try await other.acquireLease("gc", holder: "b", now: Self.t0.addingTimeInterval(100), duration: .seconds(60)) == false,
                    "the renewal runs to 110 s")
            #expect(try await other.acquireLease("gc", holder: "b", now: Self.t0.addingTimeInterval(111), duration: .seconds(60)),
                    "an expired lease is taken over")
            try await store.releaseLease("gc", holder: "a")  // not a's any more: nothing happens
            #expect(try await store.acquireLease("gc", holder: "a", now: Self.t0.addingTimeInterval(120), duration: .seconds(60)) == false)
            try await other.releaseLease("gc", holder: "b")
            #expect(try await store.acquireLease("gc", holder: "a", now: Self.t0.addingTimeInterval(121), duration: .seconds(60)))

            // Two clients racing for fresh leases: exactly one wins each.
            for round in 0..<20 {
                async let first = store.acquireLease("race-\(round)", holder: "a", now: Self.t0, duration: .seconds(60))
                async let second = other.acquireLease("race-\(round)", holder: "b", now: Self.t0, duration: .seconds(60))
                let (x, y) = try await (first, second)
                #expect(x != y, "round \(round): a \(x), b \(y)")
            }
        }
    }

    @Test(arguments: Backend.allCases) func agentsHeartbeatAndTakeTheirInstancesWhenRemoved(_ backend: Backend) async throws {
        try await Self.withStores(backend) { store, other, _ in
            try await store.heartbeat(AgentRecord(id: "a", address: "10.0.0.1:9001", startedAt: Self.t0, heartbeatAt: Self.t0))
            try await other.heartbeat(AgentRecord(id: "b", address: "10.0.0.2:9001", startedAt: Self.t0, heartbeatAt: Self.t0))
            try await store.heartbeat(AgentRecord(id: "a", address: "10.0.0.1:9001", startedAt: Self.t0,
                                                  heartbeatAt: Self.t0.addingTimeInterval(5)))
            let agents = try await other.agents()
            #expect(agents.map(\.id) == ["a", "b"])
            #expect(agents.first?.heartbeatAt == Self.t0.addingTimeInterval(5), "the heartbeat was renewed")
            #expect(agents.first?.startedAt == Self.t0)

            let f = try FunctionName("f"), g = try FunctionName("g")
            try await store.setInstance(InstanceRecord(id: "i1", agent: "a", function: f, state: "warm", since: Self.t0))
            try await store.setInstance(InstanceRecord(id: "i2", agent: "a", function: g, state: "warm", since: Self.t0))
            try await other.setInstance(InstanceRecord(id: "i3", agent: "b", function: f, state: "warm", since: Self.t0))
            try await store.setInstance(InstanceRecord(id: "i1", agent: "a", function: f, state: "deduplicated",
                                                       since: Self.t0.addingTimeInterval(9)))
            #expect(try await other.instances(of: f).map(\.id) == ["i1", "i3"])
            #expect(try await other.instances(of: f).first?.state == "deduplicated")
            try await other.removeInstance(id: "i3")
            try await other.removeInstance(id: "i3")  // gone already: nothing happens
            #expect(try await store.instances(of: nil).map(\.id) == ["i1", "i2"])

            // An agent leaving takes its instances with it.
            #expect(try await other.removeAgent(id: "a"))
            #expect(try await other.removeAgent(id: "a") == false)
            #expect(try await store.agents().map(\.id) == ["b"])
            #expect(try await store.instances(of: nil).isEmpty)
        }
    }

    @Test func badLocationsAndNamesAreRefusedClearly() async throws {
        for text in ["postgres://127.0.0.1/db", "postgres://thaw@127.0.0.1", "s3://bucket/x", ""] {
            #expect(throws: MetadataError.self, "\(text)") { try MetadataLocation(parsing: text) }
        }
        #expect(try MetadataLocation(parsing: "postgres://u:pw@db.example:6543/thaw") == .postgres(host: "db.example", port: 6543, user: "u", password: "pw", database: "thaw"))
        #expect(try MetadataLocation(parsing: "sqlite:/x/m.sqlite") == .sqlite(path: "/x/m.sqlite"))
        for name in ["", "-x", ".hidden", "a/b", "a b", String(repeating: "n", count: 65)] {
            #expect(throws: MetadataError.self, "'\(name)'") { try FunctionName(name) }
        }
        // A server that is not there: a clear error naming it.
        let port = try TestSupport.freePort()
        await #expect { _ = try await MetadataLocation(parsing: "postgres://thaw@127.0.0.1:\(port)/thaw").open() } throws: {
            ($0 as? MetadataError)?.kind == .unavailable && "\($0)".contains("127.0.0.1:\(port)")
        }
        try await TestSupport.withTemporaryDirectory { dir in
            FileManager.default.createFile(atPath: dir + "/not-a-database", contents: Data("hello, this is not SQLite".utf8))
            await #expect { _ = try await MetadataLocation.sqlite(path: dir + "/not-a-database").open() } throws: {
                "\($0)".contains(dir + "/not-a-database")
            }
        }
    }
}
