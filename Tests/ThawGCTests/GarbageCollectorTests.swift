import Foundation
import Synchronization
import Testing
import ThawGC
import ThawImage
import ThawMedes
import ThawMetadata
import ThawPush
import ThawSeal
import ThawServe
import ThawStore
import ThawTestSupport

/// A clock the test moves by hand, so a root's whole life takes no time.
final class TestClock: Sendable {
    private let now = Mutex(Date(timeIntervalSince1970: 1_800_000_000))
    var date: Date { now.withLock { $0 } }
    func advance(_ seconds: TimeInterval) { now.withLock { $0 = $0.addingTimeInterval(seconds) } }
}

/// Fails `putChunk` after a number of chunks, as a process killed during copy-forward would stop.
final class FailingStore: ChunkStore {
    let base: any ChunkStore
    private let remaining: Mutex<Int>

    init(_ base: any ChunkStore, failAfter chunks: Int) {
        self.base = base
        remaining = Mutex(chunks)
    }

    var location: String { base.location }
    func put(_ key: StoreKey, _ bytes: [UInt8]) async throws { try await base.put(key, bytes) }
    func get(_ key: StoreKey) async throws -> [UInt8] { try await base.get(key) }
    func exists(_ key: StoreKey) async throws -> Bool { try await base.exists(key) }
    func delete(_ key: StoreKey) async throws { try await base.delete(key) }
    func list(under prefix: String) -> AsyncThrowingStream<StoreKey, any Error> { base.list(under: prefix) }
    func putChunk(_ name: ChunkName, _ ciphertext: [UInt8], root: RootID) async throws {
        let allowed = remaining.withLock { count -> Bool in
            count -= 1
            return count >= 0
        }
        guard allowed else { throw StoreError(.unavailable, "injected failure writing chunk \(name)") }
        try await base.putChunk(name, ciphertext, root: root)
    }
}

@Suite(.timeLimit(.minutes(10))) struct GarbageCollectorTests {
    struct Setup {
        let dir: String
        let store: DirectoryStore
        let keys: LocalKeyProvider
        let metadata: any MetadataStore
        let clock = TestClock()

        init(_ dir: String) async throws {
            self.dir = dir
            store = try DirectoryStore(path: dir + "/store", create: true)
            keys = LocalKeyProvider(directory: dir + "/keys")
            metadata = try await MetadataLocation.sqlite(path: dir + "/store.metadata.sqlite").open(now: clock.date)
        }

        /// Pushes fixture `variant` into the active root and records it; names it when asked.
        func push(_ variant: String, name: String? = nil) async throws -> String {
            try Fixtures.make(variant, in: dir + "/oci")
            var options = PushOptions()
            options.root = try await metadata.activeRoot().id
            let report = try await Pusher(store: store, keys: keys, options: options)
                .push(try Image.open(.ociLayout(path: dir + "/oci", tag: variant)))
            let h = report.header
            try await metadata.addManifest(ManifestRecord(id: report.manifestID, root: h.root, tenant: h.tenant, imageSize: h.imageSize,
                                                          chunkCount: h.chunkCount, createdAt: clock.date))
            if let name {
                try await metadata.setFunction(FunctionRecord(name: try FunctionName(name), manifestID: report.manifestID, root: h.root,
                                                              tenant: h.tenant, updatedAt: clock.date))
            }
            return report.manifestID
        }

        /// The image a manifest rebuilds to, pulled and verified.
        func pulled(_ id: String, root: RootID, as name: String) async throws -> Data {
            let key = StoreLayout.manifest(id: id, root: root, tenant: .default)
            let manifest = try await Manifest.open(try await store.get(key), keys: keys)
            _ = try await Puller(store: store, keys: keys).pull(manifest, to: dir + "/" + name)
            return try Data(contentsOf: URL(fileURLWithPath: dir + "/" + name))
        }

        func collector(_ store: (any ChunkStore)? = nil, policy: GCPolicy = GCPolicy(quietPeriod: .seconds(86_400))) -> GarbageCollector {
            let clock = self.clock
            return GarbageCollector(metadata: metadata, store: store ?? self.store, keys: keys, policy: policy, clock: { clock.date })
        }

        func exists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: dir + "/store/" + path) }
    }

    static func withSetup(_ body: (Setup) async throws -> Void) async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let setup = try await Setup(dir)
            do {
                try await body(setup)
            } catch {
                await setup.metadata.close()
                throw error
            }
            await setup.metadata.close()
        }
    }

    @Test func aRootLivesRetiresExpiresAndIsDeletedWhileNamedImagesMoveOn() async throws {
        try await Self.withSetup { setup in
            let named = try await setup.push("full", name: "fn")
            let unnamed = try await setup.push("shared-a")
            let original = try await setup.pulled(named, root: .initial, as: "original.ext4")

            // Nothing to do while the first root is active.
            #expect(try await setup.collector().run() == GCReport())

            setup.clock.advance(3600)
            let r2 = try RootID("r0002")
            try await setup.metadata.rotate(to: r2, now: setup.clock.date)
            var report = try await setup.collector().run()
            let copy = try #require(report.copied.first)
            #expect(report.copied.count == 1 && copy.from == named && copy.names.map(\.value) == ["fn"])
            #expect(report.bytesResealed > 0 && report.expired == [.initial] && report.waiting == [.initial])
            let function = try #require(try await setup.metadata.function(named: try FunctionName("fn")))
            #expect(function.manifestID == copy.to && function.root == r2)
            // The copy rebuilds the same image from chunks sealed under the new root's salt.
            #expect(try await setup.pulled(copy.to, root: r2, as: "copy.ext4") == original)
            #expect(setup.exists("roots/r0002/configs/default/\(copy.to)"))
            #expect(!setup.exists("roots/r0002/manifests/default/\(unnamed)"), "an unnamed manifest is not live")
            #expect(try await setup.metadata.root(.initial)?.state == .expired)

            // A read of the expired root raises the alarm, which halts deletion until cleared.
            setup.clock.advance(3600)
            _ = try await setup.metadata.noteRead(root: .initial, at: setup.clock.date, by: "agent-1")
            setup.clock.advance(3 * 86_400)
            report = try await setup.collector().run()
            #expect(report.halted[.initial]?.contains("agent-1") == true && report.deleted.isEmpty)
            #expect(setup.exists("roots/r0001/manifests/default/\(named)"))
            #expect(try await setup.metadata.clearAlarm(root: .initial))
            // An old agent holding the original manifest goes on reading after the deletion.
            let old = try await Manifest.open(try await setup.store.get(StoreLayout.manifest(id: named, root: .initial, tenant: .default)),
                                              keys: setup.keys)

            report = try await setup.collector().run()
            #expect((report.deleted[.initial] ?? 0) > 0, "\(report)")
            // Its reads now fail with an error naming the missing chunk and the deleted root.
            await #expect {
                _ = try await Puller(store: setup.store, keys: setup.keys).pull(old, to: setup.dir + "/gone.ext4")
            } throws: { error in
                let text = "\(error)"
                return text.contains("missing") && text.contains("root r0001")
            }
            #expect(!setup.exists("roots/r0001"), "the whole root is gone")
            #expect(try await setup.metadata.root(.initial)?.state == .deleted)
            #expect(try await setup.metadata.manifests(in: .initial).isEmpty)
            // Nothing outside the root was touched: the copy still rebuilds.
            #expect(try await setup.pulled(copy.to, root: r2, as: "after.ext4") == original)
            // Reruns converge.
            #expect(try await setup.collector().run() == GCReport())
        }
    }

    @Test func aStartUsingAManifestKeepsItsRootUntilTheStartEnds() async throws {
        try await Self.withSetup { setup in
            _ = try await setup.push("full", name: "fn")
            // A start of a manifest no name points at (`thaw run ID`, or an old name's image).
            let used = try await setup.push("shared-a")
            let original = try await setup.pulled(used, root: .initial, as: "original.ext4")
            _ = try await setup.metadata.beginUse(manifest: used, root: .initial, by: "agent-1", until: setup.clock.date.addingTimeInterval(600))
            try await setup.metadata.rotate(to: try RootID("r0002"), now: setup.clock.date)

            var report = try await setup.collector().run()
            #expect(report.copied.count == 1 && report.expired.isEmpty && report.inUse == [.initial: 1], "\(report)")
            #expect(try await setup.metadata.root(.initial)?.state == .retired)
            // The agent renews its use while it serves; days later the root is still kept.
            setup.clock.advance(3 * 86_400)
            _ = try await setup.metadata.beginUse(manifest: used, root: .initial, by: "agent-1", until: setup.clock.date.addingTimeInterval(600))
            report = try await setup.collector().run()
            #expect(report.inUse == [.initial: 1] && report.deleted.isEmpty, "\(report)")
            #expect(try await setup.pulled(used, root: .initial, as: "still.ext4") == original, "the start can read all of its image")

            // The start ends: the root expires, and is deleted after its quiet period.
            try await setup.metadata.endUse(manifest: used, root: .initial, by: "agent-1")
            report = try await setup.collector().run()
            #expect(report.expired == [.initial] && report.inUse.isEmpty, "\(report)")
            setup.clock.advance(86_400)
            report = try await setup.collector().run()
            #expect((report.deleted[.initial] ?? 0) > 0, "\(report)")
        }
    }

    @Test func aCopyCutShortIsFinishedByTheNextRun() async throws {
        try await Self.withSetup { setup in
            let named = try await setup.push("full", name: "fn")
            let original = try await setup.pulled(named, root: .initial, as: "original.ext4")
            try await setup.metadata.rotate(to: try RootID("r0002"), now: setup.clock.date)
            // The first run stops after three chunks, before any manifest or name moves.
            await #expect(throws: StoreError.self) { try await setup.collector(FailingStore(setup.store, failAfter: 3)).run() }
            #expect(try await setup.metadata.function(named: try FunctionName("fn"))?.root == .initial)
            #expect(try await setup.metadata.root(.initial)?.state == .retired)
            // The lease was given back, and the next run finishes the copy.
            let report = try await setup.collector().run()
            let copy = try #require(report.copied.first)
            #expect(try await setup.pulled(copy.to, root: try RootID("r0002"), as: "copy.ext4") == original)
            #expect(report.expired == [.initial])
        }
    }

    @Test func twoCollectorsDoNotBothActAndRotationCanBeAutomatic() async throws {
        try await Self.withSetup { setup in
            _ = try await setup.push("full", name: "fn")
            #expect(try await setup.metadata.acquireLease(GarbageCollector.leaseName, holder: "another", now: setup.clock.date, duration: .seconds(600)))
            await #expect { try await setup.collector().run() } throws: { ($0 as? GCError)?.kind == .leaseHeld }
            #expect(try await setup.metadata.roots().count == 1, "the refused run did nothing")
            try await setup.metadata.releaseLease(GarbageCollector.leaseName, holder: "another")

            let policy = GCPolicy(rotationPeriod: .seconds(86_400), quietPeriod: .seconds(86_400))
            #expect(try await setup.collector(policy: policy).run().rotatedTo == nil, "the active root is new")
            setup.clock.advance(86_400)
            let report = try await setup.collector(policy: policy).run()
            #expect(report.rotatedTo?.value == "r0002" && report.copied.count == 1 && report.expired == [.initial])
            #expect(try RootNaming.next(after: [try RootID("r0009"), try RootID("r0010"), try RootID("custom")]).value == "r0011")
        }
    }

    /// A function's memory snapshot moves forward with its image: the record is re-sealed for
    /// the copy, naming a copy of the memory manifest that rebuilds the same RAM file.
    @Test func aSnapshotMovesForwardWithItsImage() async throws {
        try await Self.withSetup { setup in
            let named = try await setup.push("full", name: "fn")
            // A RAM file: a few pages of data among holes, as a guest leaves it.
            let ram = setup.dir + "/ram"
            var bytes = [UInt8](repeating: 0, count: 4 << 20)
            var state: UInt64 = 0x9e37_79b9_7f4a_7c15
            for page in stride(from: 0, to: bytes.count, by: 12_288) {
                for offset in page..<(page + 4096) {
                    state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                    bytes[offset] = UInt8(truncatingIfNeeded: state >> 56)
                }
            }
            try Data(bytes).write(to: URL(fileURLWithPath: ram))
            var options = PushOptions()
            options.chunkSize = 64 << 10
            let memory = try await Pusher(store: setup.store, keys: setup.keys, options: options).pushFile(at: ram)
            let record = SnapshotRecord(imageManifestID: named, memoryManifestID: memory.manifestID, memoryMiB: 4, responseLimit: 1 << 20,
                                        tmpSize: 1 << 20, kernelDigest: Array(repeating: 1, count: 32), initramfsDigest: Array(repeating: 2, count: 32),
                                        launchDigest: Array(repeating: 3, count: 32), kernelArguments: "nokaslr", accelerator: "tcg",
                                        takenAtMilliseconds: 1, deviceState: Array(repeating: 0x42, count: 5000))
            try await setup.store.put(StoreLayout.snapshot(id: named, root: .initial, tenant: .default),
                                      try await record.sealed(tenant: .default, keys: setup.keys))

            let r2 = try RootID("r0002")
            try await setup.metadata.rotate(to: r2, now: setup.clock.date)
            let copy = try #require(try await setup.collector().run().copied.first)
            let copiedImage = try await Manifest.open(try await setup.store.get(StoreLayout.manifest(id: copy.to, root: r2, tenant: .default)),
                                                      keys: setup.keys)
            let moved = try await SnapshotRecord.open(try await setup.store.get(StoreLayout.snapshot(id: copy.to, root: r2, tenant: .default)),
                                                      for: copiedImage.header, keys: setup.keys)
            #expect(moved.memoryManifestID != memory.manifestID, "the memory is re-sealed under the new root's salt")
            #expect(moved.deviceState == record.deviceState && moved.kernelDigest == record.kernelDigest && moved.kernelArguments == "nokaslr")
            // The old record does not open for the copy: it names the original image.
            await #expect(throws: SealError.self) {
                try await SnapshotRecord.open(try await setup.store.get(StoreLayout.snapshot(id: named, root: .initial, tenant: .default)),
                                              for: copiedImage.header, keys: setup.keys)
            }

            // The first root goes; the copied memory rebuilds the RAM file from the new root alone.
            setup.clock.advance(3 * 86_400)
            #expect((try await setup.collector().run().deleted[.initial] ?? 0) > 0)
            #expect(!setup.exists("roots/r0001"))
            #expect(try await setup.pulled(moved.memoryManifestID, root: r2, as: "ram-copy") == Data(bytes))
        }
    }

    @Test func aPatchedSnapshotTakesItsBaseAlong() async throws {
        try await Self.withSetup { setup in
            let named = try await setup.push("full", name: "fn")
            let (base, derived) = SimilarMemory.pair(size: 4 << 20, seed: 13)
            try Data(base).write(to: URL(fileURLWithPath: setup.dir + "/base.ram"))
            try Data(derived).write(to: URL(fileURLWithPath: setup.dir + "/derived.ram"))
            var options = PushOptions()
            options.chunkSize = 64 << 10
            let pusher = Pusher(store: setup.store, keys: setup.keys, options: options)
            // The base belongs to no named function: only the patches keep it. It is stored
            // compressed (deltas that name no base), as thaw snapshot stores memory by default.
            let baseReport = try await pusher.pushFile(at: setup.dir + "/base.ram", patching: FilePatching(baseManifestID: nil) { chunk, _ in
                ChunkDelta.compressed(chunk, pageSize: 4096)
            })
            #expect(baseReport.patchedChunks > 0, "a third of the base's pages are zeros: its chunks compress")
            var pages = BaseSnapshotPages()
            pages.add(memory: base, firstPage: 0)
            let basePages = pages
            let memory = try await pusher.pushFile(at: setup.dir + "/derived.ram",
                                                   patching: FilePatching(baseManifestID: baseReport.manifestID) { chunk, index in basePages.delta(for: chunk, firstPage: index * 16) })
            #expect(memory.patchedChunks > 0)
            let record = SnapshotRecord(imageManifestID: named, memoryManifestID: memory.manifestID, memoryMiB: 4, responseLimit: 1 << 20,
                                        tmpSize: 1 << 20, kernelDigest: Array(repeating: 1, count: 32), initramfsDigest: Array(repeating: 2, count: 32),
                                        launchDigest: Array(repeating: 3, count: 32), kernelArguments: "nokaslr", accelerator: "tcg",
                                        takenAtMilliseconds: 1, deviceState: [7])
            try await setup.store.put(StoreLayout.snapshot(id: named, root: .initial, tenant: .default),
                                      try await record.sealed(tenant: .default, keys: setup.keys))

            let r2 = try RootID("r0002")
            try await setup.metadata.rotate(to: r2, now: setup.clock.date)
            let copy = try #require(try await setup.collector().run().copied.first)
            setup.clock.advance(3 * 86_400)
            #expect((try await setup.collector().run().deleted[.initial] ?? 0) > 0)
            #expect(!setup.exists("roots/r0001"))

            // From the new root alone: the record, the memory, its patch table, its deltas and its base.
            func open(_ id: String) async throws -> Manifest {
                try await Manifest.open(try await setup.store.get(StoreLayout.manifest(id: id, root: r2, tenant: .default)), keys: setup.keys)
            }
            let image = try await open(copy.to)
            let moved = try await SnapshotRecord.open(try await setup.store.get(StoreLayout.snapshot(id: copy.to, root: r2, tenant: .default)),
                                                      for: image.header, keys: setup.keys)
            let copiedMemory = try await open(moved.memoryManifestID)
            let table = try await PatchTable.open(try await setup.store.get(StoreLayout.patchTable(id: copiedMemory.header.id, root: r2, tenant: .default)),
                                                  for: copiedMemory.header, keys: setup.keys)
            #expect(table.deltas.count == memory.patchedChunks)
            #expect(table.baseManifestID != baseReport.manifestID, "the base is re-sealed under the new root's salt")
            let copiedBase = try await open(try #require(table.baseManifestID))
            let baseTable = try await PatchTable.open(try await setup.store.get(StoreLayout.patchTable(id: copiedBase.header.id, root: r2, tenant: .default)),
                                                      for: copiedBase.header, keys: setup.keys)
            #expect(baseTable.baseManifestID == nil && baseTable.deltas.count == baseReport.patchedChunks)
            let baseImage = LazyImage(manifest: copiedBase, store: setup.store, patches: ChunkPatches(table: baseTable, base: nil))
            let read = LazyImage(manifest: copiedMemory, store: setup.store, patches: ChunkPatches(table: table, base: baseImage))
            #expect(try await read.read(offset: 0, length: derived.count) == derived)
            #expect(read.statistics.chunksRebuilt == table.deltas.count)
            // Read straight from the store too, as thaw pull does.
            #expect(try await setup.pulled(copiedMemory.header.id, root: r2, as: "derived-copy") == Data(derived))
            #expect(try await setup.pulled(copiedBase.header.id, root: r2, as: "base-copy") == Data(base))
        }
    }

    @Test func theCommandsRotateCollectAndListRoots() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            try await TestSupport.onOwnThread { try Fixtures.make("full", in: dir + "/oci") }
            let common = ["--store", dir + "/store", "--keys", dir + "/keys"]
            let pushed = try await TestSupport.thawOnOwnThread(["push", "oci:\(dir)/oci:full", "--name", "fn"] + common).output
            let original = try #require(pushed.split(separator: "\n").first { $0.contains(" as manifest ") }?.split(separator: " ").last)
            #expect(try await TestSupport.thawOnOwnThread(["gc"] + common).output.contains("nothing to do"))
            #expect(try await TestSupport.thawOnOwnThread(["roots", "rotate"] + common).output.contains("root r0002 is active; r0001 is retired"))
            let gc = try await TestSupport.thawOnOwnThread(["gc"] + common).output
            #expect(gc.contains("copied forward: \(original.prefix(16))") && gc.contains("expired: r0001") && gc.contains("waiting: r0001"), "\(gc)")

            // An old agent still serves the original from the expired root: its reads raise the alarm.
            let port = try TestSupport.freePort()
            // It finds the manifest without being told its root: readers look in every root not deleted.
            let serve = try BackgroundProcess(TestSupport.thawExecutable, ["serve", String(original), "--nbd", "127.0.0.1:\(port)",
                                                                           "--disk-cache", "0"] + common, logPath: dir + "/serve.log")
            try await TestSupport.onOwnThread { try TestSupport.waitForPort(port, what: "thaw serve") }
            let read = try await TestSupport.runOnOwnThread("nbdcopy", ["nbd://127.0.0.1:\(port)/", dir + "/old.ext4"])
            #expect(read.status == 0, "\(read.output)")
            #expect(try await TestSupport.onOwnThread { serve.stop(grace: 20) } == 0)
            let log = (try? String(contentsOfFile: dir + "/serve.log", encoding: .utf8)) ?? ""
            #expect(log.contains("read a root garbage collection has expired"), "\(log)")
            #expect(try await TestSupport.thawOnOwnThread(["roots", "list"] + common).output.contains("while expired"))
            let halted = try await TestSupport.thawOnOwnThread(["gc", "--quiet-hours", "0"] + common).output
            #expect(halted.contains("HALTED: r0001") && !halted.contains("deleted: r0001"), "\(halted)")
            #expect(FileManager.default.fileExists(atPath: dir + "/store/roots/r0001"))
            #expect(try await TestSupport.thawOnOwnThread(["roots", "clear-alarm", "r0001"] + common).output.contains("cleared"))

            // A quiet period of 0 after the operator cleared the alarm: deleted.
            let deleted = try await TestSupport.thawOnOwnThread(["gc", "--quiet-hours", "0"] + common).output
            #expect(deleted.contains("deleted: r0001"), "\(deleted)")
            let list = try await TestSupport.thawOnOwnThread(["roots", "list"] + common).output
            let lines = list.split(separator: "\n")
            #expect(lines.contains { $0.hasPrefix("r0001") && $0.contains("deleted") }, "\(list)")
            #expect(lines.contains { $0.hasPrefix("r0002") && $0.contains("active") && $0.contains(" 1 ") }, "\(list)")
            let functions = try await TestSupport.thawOnOwnThread(["functions", "list", "--json"] + common).output
            let moved = try #require(try JSONSerialization.jsonObject(with: Data(functions.utf8)) as? [String: Any])
            #expect(moved["root"] as? String == "r0002")
            let copy = try #require(moved["manifest"] as? String)
            let pulled = try await TestSupport.thawOnOwnThread(["pull", copy, "-o", dir + "/copy.ext4"] + common, check: false)
            #expect(pulled.status == 0, "\(pulled.output)")
            let gone = try await TestSupport.thawOnOwnThread(["inspect", String(original)] + common, check: false)
            #expect(gone.status != 0 && gone.output.contains("no manifest \(original)") && gone.output.contains("(root r0002)"), "\(gone.output)")
            #expect(!FileManager.default.fileExists(atPath: dir + "/store/roots/r0001"))
            let clear = try await TestSupport.thawOnOwnThread(["roots", "clear-alarm", "r0001"] + common, check: false)
            #expect(clear.status != 0 && clear.output.contains("no alarm"), "\(clear.output)")
            let taken = try await TestSupport.thawOnOwnThread(["roots", "rotate", "--id", "r0002"] + common, check: false)
            #expect(taken.status != 0 && taken.output.contains("r0002 already exists"), "\(taken.output)")
        }
    }
}
