import Foundation
import Logging
import Synchronization
import Testing
import ThawGC
import ThawImage
import ThawMetadata
import ThawPush
import ThawSeal
import ThawStore
import ThawTestSupport

/// Fails every store mutation after a number of them, as a collector killed at that point
/// would stop: nothing after it happens, everything before it stays.
final class CrashingStore: ChunkStore {
    let base: any ChunkStore
    private let remaining: Mutex<Int>

    init(_ base: any ChunkStore, after mutations: Int) {
        self.base = base
        remaining = Mutex(mutations)
    }

    func mutate() throws {
        let allowed = remaining.withLock { count -> Bool in
            count -= 1
            return count >= 0
        }
        guard allowed else { throw StoreError(.unavailable, "crashed") }
    }

    var location: String { base.location }
    func get(_ key: StoreKey) async throws -> [UInt8] { try await base.get(key) }
    func exists(_ key: StoreKey) async throws -> Bool { try await base.exists(key) }
    func list(under prefix: String) -> AsyncThrowingStream<StoreKey, any Error> { base.list(under: prefix) }
    func put(_ key: StoreKey, _ bytes: [UInt8]) async throws {
        try mutate()
        try await base.put(key, bytes)
    }
    func putChunk(_ name: ChunkName, _ ciphertext: [UInt8], root: RootID) async throws {
        try mutate()
        try await base.putChunk(name, ciphertext, root: root)
    }
    func delete(_ key: StoreKey) async throws {
        try mutate()
        try await base.delete(key)
    }
    func deleteAll(under prefix: String) async throws -> Int {
        try mutate()
        return try await base.deleteAll(under: prefix)
    }
}

/// Random schedules of pushes, renames, removals, starts that run over several steps (noting
/// their use, renewed each step, and ended, or left to run out when their agent dies), reads by
/// old agents, rotations, alarm clearing and garbage collection runs that crash after a random
/// number of store writes, each on a fresh copy of a store. After every step: every function
/// name's manifest and every running start's manifest can be read with all their chunks, and a
/// root whose alarm is up is never deleted. After each schedule, collections without crashes
/// converge: a further run changes nothing.
@Suite(.timeLimit(.minutes(20))) struct GCModelTests {
    /// 1,000 in CI; `THAW_GC_SCHEDULES` changes it for a quicker local run or a longer search.
    static let schedules = Int(ProcessInfo.processInfo.environment["THAW_GC_SCHEDULES"] ?? "") ?? 1_000
    static let stepsPerSchedule = 12
    static let names = ["a", "b", "c"]
    static let variants = ["full", "shared-a"]

    /// Thousands of collections would log every step; the schedule's trace says what happened.
    static let quiet = Logger(label: "thaw.gc.model") { _ in SwiftLogNoOpLogHandler() }

    /// A directory in memory (tmpfs) when there is one: every store write is fsynced, and a
    /// thousand schedules of them on a disk would take many minutes.
    static func withScratch(_ body: (String) async throws -> Void) async throws {
        guard FileManager.default.fileExists(atPath: "/dev/shm") else { return try await TestSupport.withTemporaryDirectory(body) }
        let dir = "/dev/shm/thaw-gc-model-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        do {
            try await body(dir)
        } catch {
            try? FileManager.default.removeItem(atPath: dir)
            throw error
        }
        try? FileManager.default.removeItem(atPath: dir)
    }

    @Test func randomSchedulesNeverLoseALiveChunkNorDeleteAnAlarmedRoot() async throws {
        try await Self.withScratch { dir in
            for variant in Self.variants { try Fixtures.make(variant, in: dir + "/oci") }
            let keys = LocalKeyProvider(directory: dir + "/keys")
            // Each image pushed once per root, on first use, then reused by every schedule.
            var pushed: [String: (template: String, id: String)] = [:]
            var steps = 0
            var counts = Counts()
            for schedule in 0..<Self.schedules {
                var random = SeededGenerator(seed: UInt64(schedule) &* 7919)
                let work = dir + "/s\(schedule)"
                try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
                let store = try DirectoryStore(path: work + "/store", create: true)
                let metadata = try await MetadataLocation.sqlite(path: work + "/metadata.sqlite").open(now: Date(timeIntervalSince1970: 0))
                do {
                    try await run(schedule: schedule, random: &random, store: store, metadata: metadata, keys: keys, dir: dir,
                                  pushed: &pushed, steps: &steps, counts: &counts)
                } catch {
                    await metadata.close()
                    throw error
                }
                await metadata.close()
                try FileManager.default.removeItem(atPath: work)
            }
            #expect(steps >= Self.schedules * Self.stepsPerSchedule)
            // The schedules reached what they are meant to test.
            #expect(counts.copies > 0 && counts.deletions > 0 && counts.crashes > 0 && counts.alarms > 0 && counts.halts > 0
                    && counts.keptInUse > 0, "\(counts)")
            print("GC model: \(Self.schedules) schedules, \(steps) steps: \(counts)")
        }
    }

    /// How often the interesting things happened over all schedules.
    struct Counts {
        var copies = 0, deletions = 0, crashes = 0, alarms = 0, halts = 0, keptInUse = 0
    }

    func run(schedule: Int, random: inout SeededGenerator, store: DirectoryStore, metadata: any MetadataStore, keys: LocalKeyProvider,
             dir: String, pushed: inout [String: (template: String, id: String)], steps: inout Int, counts: inout Counts) async throws {
        var clock = Date(timeIntervalSince1970: 0)
        let context = "schedule \(schedule)"
        var trace: [String] = []
        /// Starts running now: what they use, and who holds the use.
        var running: [(manifest: String, root: RootID, holder: String)] = []
        for step in 0..<Self.stepsPerSchedule {
            clock = clock.addingTimeInterval(3600)
            steps += 1
            let now = clock
            // Agents renew the uses of the starts they serve, for three steps.
            for start in running {
                _ = try await metadata.beginUse(manifest: start.manifest, root: start.root, by: start.holder, until: now.addingTimeInterval(3 * 3600))
            }
            // Weights in 24ths: push 3, rm 1, start 3, start ends 2, agent dies 1, old agent's read 3,
            // rotate 3, clear 1, gc 7.
            switch step == 0 ? 0 : Int.random(in: 0..<24, using: &random) {
            case 0...2:
                let name = Self.names.randomElement(using: &random)!, variant = Self.variants.randomElement(using: &random)!
                let root = try await metadata.activeRoot().id
                let id = try await push(variant, into: root, store: store, keys: keys, dir: dir, pushed: &pushed)
                try await metadata.addManifest(ManifestRecord(id: id, root: root, tenant: .default, imageSize: 0, chunkCount: 0, createdAt: now))
                try await metadata.setFunction(FunctionRecord(name: try FunctionName(name), manifestID: id, root: root, tenant: .default, updatedAt: now))
                trace.append("push \(variant) as \(name) into \(root)")
            case 3:
                let name = Self.names.randomElement(using: &random)!
                _ = try await metadata.removeFunction(named: try FunctionName(name))
                trace.append("rm \(name)")
            case 4...6:
                // A start: resolve the name, note the use, read every chunk, report the read. It
                // goes on running (and reading) until it ends or its agent dies.
                let name = Self.names.randomElement(using: &random)!
                if let function = try await metadata.function(named: try FunctionName(name)) {
                    let holder = "start-\(step)"
                    _ = try await metadata.beginUse(manifest: function.manifestID, root: function.root, by: holder, until: now.addingTimeInterval(3 * 3600))
                    try await readAll(function.manifestID, root: function.root, store: store, keys: keys, context: "\(context): start of \(name)")
                    _ = try await metadata.noteRead(root: function.root, at: now, by: holder)
                    running.append((function.manifestID, function.root, holder))
                    trace.append("\(holder) of \(name) from \(function.root)")
                }
            case 7...8:
                if !running.isEmpty {
                    let start = running.remove(at: Int.random(in: 0..<running.count, using: &random))
                    try await metadata.endUse(manifest: start.manifest, root: start.root, by: start.holder)
                    trace.append("\(start.holder) ends")
                }
            case 9:
                // The agent dies: nothing ends the use, which runs out by itself.
                if !running.isEmpty {
                    let start = running.remove(at: Int.random(in: 0..<running.count, using: &random))
                    trace.append("agent of \(start.holder) dies")
                }
            case 10...12:
                // An old agent reads some root that still exists.
                let roots = try await metadata.roots().filter { $0.state != .deleted }
                if let root = roots.randomElement(using: &random) {
                    let after = try await metadata.noteRead(root: root.id, at: now, by: "old agent")
                    if after?.alarm != nil, root.alarm == nil { counts.alarms += 1 }
                    trace.append("old agent reads \(root.id) (\(root.state))")
                }
            case 13...15:
                let next = try RootNaming.next(after: try await metadata.roots().map(\.id))
                try await metadata.rotate(to: next, now: now)
                trace.append("rotate to \(next)")
            case 16:
                if let root = try await metadata.roots().filter({ $0.alarm != nil }).randomElement(using: &random) {
                    _ = try await metadata.clearAlarm(root: root.id)
                    trace.append("clear alarm of \(root.id)")
                }
            default:
                // A collection with a quiet period of 0 to 5 steps, killed after a random number of
                // store writes (or not).
                let quiet = Duration.seconds(3600 * Int.random(in: 0...5, using: &random))
                let crashAfter = Bool.random(using: &random) ? Int.random(in: 0..<12, using: &random) : Int.max
                let alarmed = Set(try await metadata.roots().filter { $0.alarm != nil }.map(\.id))
                let target: any ChunkStore = crashAfter == Int.max ? store : CrashingStore(store, after: crashAfter)
                let collector = GarbageCollector(metadata: metadata, store: target, keys: keys, policy: GCPolicy(quietPeriod: quiet),
                                                 clock: { now }, holder: "gc", logger: Self.quiet)
                do {
                    let report = try await collector.run()
                    trace.append("gc: \(report)")
                    counts.copies += report.copied.count
                    counts.deletions += report.deleted.count
                    counts.halts += report.halted.count
                    counts.keptInUse += report.inUse.count
                } catch let error as StoreError where error.description == "crashed" {
                    counts.crashes += 1
                    // The process died: its lease is left behind and runs out.
                    trace.append("gc crashed after \(crashAfter) writes")
                    try await metadata.releaseLease(GarbageCollector.leaseName, holder: "gc")
                }
                for root in alarmed {
                    let after = try await metadata.root(root)
                    #expect(after?.state != .deleted, "\(context): root \(root) was deleted with its alarm up\n\(trace.joined(separator: "\n"))")
                }
            }
            let afterStep = "\(context) after \(trace.last ?? "nothing")\n\(trace.joined(separator: "\n"))"
            try await checkNamesReadable(metadata: metadata, store: store, keys: keys, context: afterStep)
            for start in running {
                try await readAll(start.manifest, root: start.root, store: store, keys: keys, context: "\(afterStep): running \(start.holder)")
            }
        }
        // Every start ends before the collections that must converge.
        for start in running { try await metadata.endUse(manifest: start.manifest, root: start.root, by: start.holder) }
        // Collections without crashes converge: once settled, a further run changes nothing.
        for root in try await metadata.roots() where root.alarm != nil { _ = try await metadata.clearAlarm(root: root.id) }
        // Late enough for the uses of starts whose agents died (three steps) to have run out.
        let later = clock.addingTimeInterval(4 * 3600)
        let collector = GarbageCollector(metadata: metadata, store: store, keys: keys, policy: GCPolicy(quietPeriod: .zero),
                                         clock: { later }, holder: "gc", logger: Self.quiet)
        _ = try await collector.run()
        let settled = try await metadata.roots()
        let again = try await collector.run()
        let rootsAfter = try await metadata.roots()
        #expect(again == GCReport() && rootsAfter == settled, "\(context): a further run changed something: \(again)")
        for root in settled where root.state != .active {
            #expect(root.state == .deleted, "\(context): root \(root.id) is \(root.state) after collections converged")
        }
        try await checkNamesReadable(metadata: metadata, store: store, keys: keys, context: "\(context) after convergence")
    }

    /// Pushes `variant` into `root` of this schedule's store. Each (variant, root) is pushed for
    /// real once into a template store and copied from there afterwards, to keep 1,000 schedules fast.
    func push(_ variant: String, into root: RootID, store: DirectoryStore, keys: LocalKeyProvider, dir: String,
              pushed: inout [String: (template: String, id: String)]) async throws -> String {
        let key = "\(variant)@\(root)"
        if pushed[key] == nil {
            let template = dir + "/template-\(variant)-\(root)"
            var options = PushOptions()
            options.root = root
            let report = try await Pusher(store: try DirectoryStore(path: template, create: true), keys: keys, options: options)
                .push(try Image.open(.ociLayout(path: dir + "/oci", tag: variant)))
            pushed[key] = (template, report.manifestID)
        }
        let (template, id) = pushed[key]!
        let source = try DirectoryStore(path: template, create: false)
        for stored in try await source.listAll(under: StoreLayout.root(root)) where try await !store.exists(stored) {
            try await store.put(stored, try await source.get(stored))
        }
        return id
    }

    func readAll(_ id: String, root: RootID, store: any ChunkStore, keys: LocalKeyProvider, context: String) async throws {
        let key = StoreLayout.manifest(id: id, root: root, tenant: .default)
        guard let bytes = try? await store.get(key) else {
            Issue.record("\(context): manifest \(key) is gone")
            return
        }
        let manifest = try await Manifest.open(bytes, keys: keys)
        for ref in manifest.chunks.compactMap({ $0 }) {
            do {
                _ = try await store.getChunk(ref.name, root: root)
            } catch {
                Issue.record("\(context): chunk \(ref.name) of manifest \(id) in \(root) cannot be read: \(error)")
                return
            }
        }
    }

    func checkNamesReadable(metadata: any MetadataStore, store: any ChunkStore, keys: LocalKeyProvider, context: String) async throws {
        for function in try await metadata.functions() {
            try await readAll(function.manifestID, root: function.root, store: store, keys: keys, context: "\(context): name \(function.name)")
        }
    }
}
