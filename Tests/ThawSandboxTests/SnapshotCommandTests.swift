import Foundation
import Testing
import ThawMedes
import ThawSeal
import ThawStore
import ThawTestSupport

/// `thaw snapshot` and the restores `thaw run` makes from it, as processes, with the agent
/// serving the snapshot's memory lazily through FUSE (TCG on hosts whose KVM cannot run guests).
@Suite(.serialized) struct SnapshotCommandTests {
    @Test func aSnapshotIsRestoredLazilyRecordedPrefetchedAndRefusedWhenItDoesNotMatch() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let harness = try RunHarness(dir)
            let id = try await harness.pushBusybox(tag: "snap", handler: MicroVMSnapshotTests.handler,
                                                   execution: .init(entrypoint: ["/function/handler"]))
            let vm = ["--vm-memory", "256", "--timeout", "300"]
            // A snapshot boot lasts a minute under TCG: off the pool, which the suites beside it need.
            let taken = try await TestSupport.thawOnOwnThread(["snapshot", id] + vm + harness.commonArguments, check: false)
            #expect(taken.status == 0 && taken.output.contains("snapshot of \(id.prefix(16)) stored"), "\(taken.output)")
            #expect(taken.output.contains("kernel arguments: nokaslr"))

            // No sandbox named: the snapshot is restored. The first restore records what it read.
            let first = try await harness.run([id, "--event", #"{"n":1}"#, "--json"] + vm + harness.commonArguments)
            #expect(first.status == 0, "\(first.log)")
            let answer = try JSONSerialization.jsonObject(with: Data(first.response.utf8)) as? [String: Any]
            #expect((answer?["event"] as? [String: Any])?["n"] as? Int == 1 && answer?["started"] as? Int == 2000, "\(first.response)")
            let firstMemory = try #require(try Self.memory(first.log), "\(first.log)")
            #expect((firstMemory["originFetches"] as? Int ?? 0) > 0, "the RAM came from the store lazily: \(firstMemory)")
            #expect((firstMemory["recordedChunks"] as? Int ?? 0) > 0, "\(firstMemory)")
            #expect((firstMemory["bytesFromOrigin"] as? Int ?? .max) < 256 << 20, "only what the guest touched was fetched")

            // The second restore, on a worker with an empty cache, prefetches the recorded working set.
            let emptyCache = ["--disk-cache", "0"] + harness.commonArguments.filter { $0 != "--cache-dir" && !$0.hasSuffix("/cache") }
            let second = try await harness.run([id, "--from-snapshot", "--event", #"{"n":2}"#, "--json"] + vm + emptyCache)
            #expect(second.status == 0, "\(second.log)")
            let secondMemory = try #require(try Self.memory(second.log), "\(second.log)")
            #expect((secondMemory["prefetchHits"] as? Int ?? 0) > 0 && secondMemory["prefetchChunks"] != nil, "\(secondMemory)")

            // A cold boot answers the same event with the same bytes.
            let cold = try await harness.run([id, "--cold", "--sandbox", "microvm", "--event", #"{"n":1}"#] + vm + harness.commonArguments)
            #expect(cold.status == 0 && cold.response == first.response, "\(cold.log)")

            // Another handler than the snapshot's is refused before anything runs.
            let changed = try await harness.run([id, "--env", "EXTRA=1", "--event", "{}"] + vm + harness.commonArguments)
            #expect(changed.status != 0 && changed.log.contains("does not match this start") && changed.log.contains("handler"), "\(changed.log)")

            // The memory is stored compressed: most chunks are deltas that name no base, and
            // `thaw pull` rebuilds the RAM from them.
            let store = try DirectoryStore(path: harness.store, create: false)
            let keys = LocalKeyProvider(directory: dir + "/keys")
            let memory = try await Self.memoryManifest(of: id, store: store, keys: keys)
            let stored = try await StoredMemory.open(memory, store: store, keys: keys)
            let deltas = try #require(stored.patches?.deltas)
            #expect(stored.patches?.baseManifestID == nil && deltas.count * 2 > memory.chunks.count(where: { $0 != nil }), "\(deltas.count) deltas")
            let pulled = try await TestSupport.thawOnOwnThread(["pull", memory.header.id, "-o", dir + "/ram", "--store", harness.store,
                                                               "--keys", dir + "/keys"]).output
            #expect(pulled.contains("\(deltas.count) rebuilt from deltas"), "\(pulled)")
            #expect(try FileManager.default.attributesOfItem(atPath: dir + "/ram")[.size] as? Int == 256 << 20)

            // Corrupt memory is never run: every chunk and delta of the RAM manifest is garbled in the store.
            let image = try await Manifest.open(try await store.get(StoreLayout.manifest(id: id, root: .initial, tenant: .default)), keys: keys)
            let imageChunks = Set(image.chunks.compactMap { $0?.name })
            for name in memory.chunks.compactMap({ $0?.name }) + deltas.values.map(\.name) where !imageChunks.contains(name) {
                try await store.put(StoreLayout.chunk(name, root: .initial), Array(repeating: 0x5a, count: 64 << 10))
            }
            let corrupt = try await harness.run([id, "--from-snapshot", "--event", "{}"] + vm + emptyCache)
            #expect(corrupt.status != 0 && corrupt.response.isEmpty, "\(corrupt.log)")
            #expect(corrupt.log.contains("corrupt"), "the failure names the corrupt chunk: \(corrupt.log)")
            #expect(await harness.leftoversAfterSettling() == [])
        }
    }

    @Test func aSnapshotStoredAgainstABaseRestoresFromItsDeltas() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let harness = try RunHarness(dir)
            let base = try await harness.pushBusybox(tag: "base", handler: MicroVMSnapshotTests.handler,
                                                     execution: .init(entrypoint: ["/function/handler"]))
            // A similar function: another image, its handler given after -- (the snapshot keeps it).
            let derived = try await harness.pushBusybox(tag: "derived", handler: MicroVMSnapshotTests.handler.replacingOccurrences(of: "2000", with: "2500"),
                                                        execution: .init(entrypoint: ["/bin/sh"]))
            let vm = ["--vm-memory", "256", "--timeout", "300"]
            let common = harness.commonArguments
            let takenBase = try await TestSupport.thawOnOwnThread(["snapshot", base] + vm + common, check: false)
            #expect(takenBase.status == 0, "\(takenBase.output)")
            let taken = try await TestSupport.thawOnOwnThread(["snapshot", derived, "--base", base] + vm + common + ["--", "/function/handler"],
                                                              check: false)
            #expect(taken.status == 0, "\(taken.output)")
            // Similar chunks are stored as deltas that name pages of the base.
            let store = try DirectoryStore(path: harness.store, create: false)
            let keys = LocalKeyProvider(directory: dir + "/keys")
            let memory = try await StoredMemory.open(try await Self.memoryManifest(of: derived, store: store, keys: keys), store: store, keys: keys)
            let baseMemory = try await Self.memoryManifest(of: base, store: store, keys: keys)
            #expect(memory.patches?.baseManifestID == baseMemory.header.id && memory.base != nil)
            var namingBasePages = 0
            for delta in Array(memory.patches?.deltas.values ?? [:].values) {
                let plaintext = try ChunkSealer.open(try await store.getChunk(delta.name, root: .initial), name: delta.name, key: delta.key)
                if try !ChunkDelta.parse(plaintext).basePages.isEmpty { namingBasePages += 1 }
            }
            #expect(namingBasePages > 0, "\(taken.output)")

            // A restore on a worker with an empty cache rebuilds them from the deltas and the base.
            let emptyCache = ["--disk-cache", "0"] + common.filter { $0 != "--cache-dir" && !$0.hasSuffix("/cache") }
            let restored = try await harness.run([derived, "--from-snapshot", "--event", #"{"n":3}"#, "--json"] + vm + emptyCache + ["--", "/function/handler"])
            #expect(restored.status == 0, "\(restored.log)")
            let answer = try JSONSerialization.jsonObject(with: Data(restored.response.utf8)) as? [String: Any]
            #expect((answer?["event"] as? [String: Any])?["n"] as? Int == 3 && answer?["started"] as? Int == 2500, "\(restored.response)")
            let breakdown = try #require(try Self.memory(restored.log), "\(restored.log)")
            #expect((breakdown["chunksRebuilt"] as? Int ?? 0) > 0, "\(breakdown)")

            // A snapshot stored against a base is refused as one, before any boot: a chain is
            // never more than one delta deep.
            let refused = try await TestSupport.thawOnOwnThread(["snapshot", base, "--base", derived] + vm + common, check: false)
            #expect(refused.status != 0 && refused.output.contains("a base is stored against no base"), "\(refused.output)")
            #expect(await harness.leftoversAfterSettling() == [])
        }
    }

    /// The memory manifest of the snapshot of image manifest `id`.
    static func memoryManifest(of id: String, store: DirectoryStore, keys: LocalKeyProvider) async throws -> Manifest {
        let image = try await Manifest.open(try await store.get(StoreLayout.manifest(id: id, root: .initial, tenant: .default)), keys: keys)
        let record = try await SnapshotRecord.open(try await store.get(StoreLayout.snapshot(id: id, root: .initial, tenant: .default)),
                                                   for: image.header, keys: keys)
        return try await Manifest.open(try await store.get(StoreLayout.manifest(id: record.memoryManifestID, root: .initial, tenant: .default)),
                                       keys: keys)
    }

    /// The `memory` object of a `--json` breakdown in a run's standard error.
    static func memory(_ log: String) throws -> [String: Any]? {
        for line in log.split(separator: "\n").reversed() where line.hasPrefix("{") {
            if let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] {
                return object["memory"] as? [String: Any]
            }
        }
        return nil
    }
}
