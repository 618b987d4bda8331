import Foundation
import Testing
import ThawTestSupport

/// `thaw gc` as separate processes, as operators and cron run it: two at once, one killed
/// part-way, and one while an agent serves a manifest of the root it would expire. The
/// store is slowed (`--origin-latency`) so a copy-forward lasts seconds. Every command and
/// wait runs off Swift's concurrency pool: they last seconds, and the suites beside these
/// need the pool's two threads.
@Suite(.timeLimit(.minutes(10))) struct GCProcessTests {
    struct Store {
        let dir: String
        var common: [String] { ["--store", dir + "/store", "--keys", dir + "/keys"] }

        /// Pushes fixture `variant`, named when asked; returns the manifest id.
        func push(_ variant: String, name: String? = nil) async throws -> String {
            let layout = dir + "/oci"
            try await TestSupport.onOwnThread { try Fixtures.make(variant, in: layout) }
            let pushed = try await TestSupport.thawOnOwnThread(["push", "oci:\(dir)/oci:\(variant)"] + (name.map { ["--name", $0] } ?? []) + common).output
            let line = try #require(pushed.split(separator: "\n").first { $0.contains(" as manifest ") })
            return String(try #require(line.split(separator: " ").last))
        }

        func pull(_ id: String, root: String, to name: String) async throws -> Data {
            let pulled = try await TestSupport.thawOnOwnThread(["pull", id, "-o", dir + "/" + name, "--root", root] + common, check: false)
            #expect(pulled.status == 0, "\(pulled.output)")
            return try Data(contentsOf: URL(fileURLWithPath: dir + "/" + name))
        }

        /// The function `name`'s manifest and root, from `thaw functions list --json`.
        func function(_ name: String) async throws -> (manifest: String, root: String) {
            let output = try await TestSupport.thawOnOwnThread(["functions", "list", "--json"] + common).output
            for line in output.split(separator: "\n") {
                guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                      object["name"] as? String == name else { continue }
                return (try #require(object["manifest"] as? String), try #require(object["root"] as? String))
            }
            Issue.record("no function \(name) in \(output)")
            return ("", "")
        }

        /// Chunks stored in `root` (files named by 64 hex digits; the fan-out folders are not counted).
        func chunkFiles(in root: String) -> Int {
            let path = dir + "/store/roots/\(root)/chunks"
            let entries = FileManager.default.enumerator(atPath: path)?.allObjects as? [String] ?? []
            return entries.filter { ($0 as NSString).lastPathComponent.count == 64 }.count
        }
    }

    @Test func twoCollectionsStartedAtOnceDoNotBothAct() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let store = Store(dir: dir)
            _ = try await store.push("full", name: "fn")
            _ = try await TestSupport.thawOnOwnThread(["roots", "rotate"] + store.common)
            // Each chunk read waits 200 ms, one at a time: the winner holds the lease for seconds.
            let gc = ["gc", "--origin-latency", "200", "--concurrency", "1"] + store.common
            async let first = TestSupport.thawOnOwnThread(gc, check: false)
            async let second = TestSupport.thawOnOwnThread(gc, check: false)
            let runs = try await [first, second]
            let acted = runs.filter { $0.status == 0 && $0.output.contains("copied forward") }
            let refused = runs.filter { $0.status != 0 && $0.output.contains("another garbage collection holds the lease") }
            #expect(acted.count == 1 && refused.count == 1, "\(runs.map { "\($0.status): \($0.output)" })")
            #expect(try await store.function("fn").root == "r0002")
            let after = try await TestSupport.thawOnOwnThread(["gc"] + store.common).output
            #expect(after.contains("waiting: r0001") && !after.contains("copied forward"), "the work was done once: \(after)")
        }
    }

    @Test func aCollectionKilledPartWayIsFinishedByTheNextAfterItsLeaseRunsOut() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let store = Store(dir: dir)
            let full = try await store.push("full", name: "fn")
            let shared = try await store.push("shared-a", name: "fn2")
            let originals = [try await store.pull(full, root: "r0001", to: "full.ext4"),
                             try await store.pull(shared, root: "r0001", to: "shared.ext4")]
            _ = try await TestSupport.thawOnOwnThread(["roots", "rotate"] + store.common)

            let killed = try BackgroundProcess(TestSupport.thawExecutable,
                                               ["gc", "--origin-latency", "200", "--concurrency", "1", "--lease-seconds", "12"] + store.common,
                                               logPath: dir + "/gc.log")
            // Killed once two chunks are re-sealed into the new root, in the middle of the first
            // copy; a second collection starts at once, while the lease is surely still held.
            // All on a thread of its own: a pool busy with other suites must not delay the kill.
            let (wasRunning, killedStatus, early) = try await TestSupport.onOwnThread {
                let deadline = Date().addingTimeInterval(60)
                while store.chunkFiles(in: "r0002") < 2, killed.isRunning, Date() < deadline { usleep(10_000) }
                let wasRunning = killed.isRunning
                kill(killed.pid, SIGKILL)
                let status = killed.stop()
                return (wasRunning, status, try TestSupport.thaw(["gc"] + store.common, check: false))
            }
            #expect(wasRunning, "the collection finished before it could be killed")
            #expect(killedStatus == nil, "ended by the signal")
            #expect(early.status != 0 && early.output.contains("holds the lease"), "\(early.output)")
            #expect(try await store.function("fn").root == "r0001", "no name moved yet")
            #expect(try await store.function("fn2").root == "r0001", "no name moved yet")

            // Its lease is left behind until it runs out; then the next run finishes the work.
            try await Task.sleep(for: .seconds(13))
            let rerun = try await TestSupport.thawOnOwnThread(["gc", "--quiet-hours", "0"] + store.common).output
            #expect(rerun.contains("expired: r0001") && rerun.contains("deleted: r0001"), "\(rerun)")
            for (index, name) in ["fn", "fn2"].enumerated() {
                let function = try await store.function(name)
                #expect(function.root == "r0002")
                #expect(try await store.pull(function.manifest, root: "r0002", to: "\(name)-copy.ext4") == originals[index], "\(name)")
            }
            #expect(!FileManager.default.fileExists(atPath: dir + "/store/roots/r0001"))
            #expect(try await TestSupport.thawOnOwnThread(["gc", "--quiet-hours", "0"] + store.common).output == "nothing to do\n")
        }
    }

    @Test func aServedManifestKeepsItsRootUntilTheAgentStops() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let store = Store(dir: dir)
            _ = try await store.push("full", name: "fn")
            // Served by its id: no name points at it, only the start keeps it live.
            let served = try await store.push("shared-a")
            let original = try await store.pull(served, root: "r0001", to: "original.ext4")
            let port = try TestSupport.freePort()
            let agent = try BackgroundProcess(TestSupport.thawExecutable, ["serve", served, "--nbd", "127.0.0.1:\(port)", "--disk-cache", "0"]
                                              + store.common, logPath: dir + "/serve.log")
            try await TestSupport.onOwnThread { try TestSupport.waitForPort(port, what: "thaw serve") }
            _ = try await TestSupport.thawOnOwnThread(["roots", "rotate"] + store.common)

            let kept = try await TestSupport.thawOnOwnThread(["gc", "--quiet-hours", "0"] + store.common).output
            #expect(kept.contains("in use: r0001 is kept while 1 start uses it") && !kept.contains("expired: r0001"), "\(kept)")
            let list = try await TestSupport.thawOnOwnThread(["roots", "list"] + store.common).output
            #expect(list.split(separator: "\n").contains { $0.hasPrefix("r0001") && $0.contains("retired") && $0.contains("  1  ") }, "\(list)")
            let read = try await TestSupport.runOnOwnThread("nbdcopy", ["nbd://127.0.0.1:\(port)/", dir + "/read.ext4"])
            #expect(read.status == 0, "\(read.output)")
            #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/read.ext4")) == original)

            // The agent stops, and ends its use: the root expires and goes.
            #expect(try await TestSupport.onOwnThread { agent.stop(grace: 20) } == 0)
            let collected = try await TestSupport.thawOnOwnThread(["gc", "--quiet-hours", "0"] + store.common).output
            #expect(collected.contains("expired: r0001") && collected.contains("deleted: r0001"), "\(collected)")
            #expect(!FileManager.default.fileExists(atPath: dir + "/store/roots/r0001"))
        }
    }
}
