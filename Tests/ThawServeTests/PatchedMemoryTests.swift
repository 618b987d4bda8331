import Foundation
import Testing
import ThawMedes
import ThawPush
import ThawSeal
import ThawServe
import ThawStore
import ThawTestSupport

/// A snapshot's RAM pushed against a base snapshot (similar pages as deltas) and read back
/// through the lazy read path: the bytes are the RAM's, the store holds much less, and a delta
/// that is damaged or meets the wrong base is refused, never served.
@Suite struct PatchedMemoryTests {
    struct Setup {
        let dir: String
        let store: DirectoryStore
        let keys: LocalKeyProvider
        let base: [UInt8]
        let derived: [UInt8]
        let baseManifest: Manifest
        let manifest: Manifest
        let report: FilePushReport
        let table: PatchTable

        init(_ dir: String) async throws {
            self.dir = dir
            (base, derived) = SimilarMemory.pair(size: 4 << 20, seed: 7)
            store = try DirectoryStore(path: dir + "/store", create: true)
            keys = LocalKeyProvider(directory: dir + "/keys")
            try Data(base).write(to: URL(fileURLWithPath: dir + "/base.ram"))
            try Data(derived).write(to: URL(fileURLWithPath: dir + "/derived.ram"))
            var options = PushOptions()
            options.chunkSize = 64 << 10
            let pusher = Pusher(store: store, keys: keys, options: options)
            let baseReport = try await pusher.pushFile(at: dir + "/base.ram")
            var pages = BaseSnapshotPages()
            pages.add(memory: base, firstPage: 0)
            let basePages = pages
            report = try await pusher.pushFile(at: dir + "/derived.ram",
                                               patching: FilePatching(baseManifestID: baseReport.manifestID) { chunk, index in basePages.delta(for: chunk, firstPage: index * 16) })
            baseManifest = try await Manifest.open(try await store.get(StoreLayout.manifest(id: baseReport.manifestID, root: .initial, tenant: .default)), keys: keys)
            manifest = try await Manifest.open(try await store.get(StoreLayout.manifest(id: report.manifestID, root: .initial, tenant: .default)), keys: keys)
            table = try await PatchTable.open(try await store.get(StoreLayout.patchTable(id: report.manifestID, root: .initial, tenant: .default)),
                                              for: manifest.header, keys: keys)
        }

        func image(base: Manifest? = nil) -> LazyImage {
            let baseImage = LazyImage(manifest: base ?? baseManifest, store: store, configuration: LazyImageConfiguration(readAhead: 0))
            return LazyImage(manifest: manifest, store: store, configuration: LazyImageConfiguration(readAhead: 0),
                             patches: ChunkPatches(table: table, base: baseImage))
        }

        func deltaPath(_ index: Int) -> String { store.root + "/" + StoreLayout.chunk(table.deltas[index]!.name, root: .initial).path }
    }

    @Test func readsGiveTheRAMWhileTheStoreKeepsDeltas() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let setup = try await Setup(dir)
            #expect(setup.report.patchedChunks == setup.table.deltas.count)
            #expect(setup.table.deltas.count * 2 > setup.report.dataChunks, "most chunks are similar to the base: \(setup.table.deltas.count) of \(setup.report.dataChunks)")
            #expect(setup.table.baseManifestID == setup.baseManifest.header.id)
            // The manifest names each chunk as if whole; patched ones are not in the store.
            for (index, delta) in setup.table.deltas {
                let ref = try #require(setup.manifest.chunks[index])
                #expect(try await !setup.store.hasChunk(ref.name, root: .initial))
                #expect(try await setup.store.hasChunk(delta.name, root: .initial))
            }
            #expect(setup.report.progress.bytesUploaded * 2 < UInt64(setup.report.dataChunks * 64 * 1024))

            let image = setup.image()
            var whole: [UInt8] = []
            for offset in stride(from: 0, to: setup.derived.count, by: 200_000) {
                whole += try await image.read(offset: UInt64(offset), length: min(200_000, setup.derived.count - offset))
            }
            #expect(whole == setup.derived)
            #expect(image.statistics.chunksRebuilt == setup.table.deltas.count)
            #expect(image.statistics.fetchErrors == 0)
        }
    }

    @Test func aDamagedDeltaOrAnotherBaseIsRefused() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let setup = try await Setup(dir)
            let (index, _) = try #require(setup.table.deltas.min { $0.key < $1.key })
            let offset = UInt64(index * 64 * 1024)
            var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: setup.deltaPath(index))))
            bytes[bytes.count / 2] ^= 0x01
            try Data(bytes).write(to: URL(fileURLWithPath: setup.deltaPath(index)))
            let damaged = setup.image()
            let error = await #expect(throws: ChunkFetchError.self) { try await damaged.read(offset: offset, length: 4096) }
            #expect(error?.chunkIndex == index && error?.kind == .corrupt, "\(String(describing: error))")
            bytes[bytes.count / 2] ^= 0x01
            try Data(bytes).write(to: URL(fileURLWithPath: setup.deltaPath(index)))

            // Another snapshot's RAM as the base: every patch applies to a page of it, but the
            // rebuilt chunk is not the one the manifest names.
            try Data(SimilarMemory.pair(size: 4 << 20, seed: 99).base).write(to: URL(fileURLWithPath: dir + "/other.ram"))
            var options = PushOptions()
            options.chunkSize = 64 << 10
            let other = try await Pusher(store: setup.store, keys: setup.keys, options: options).pushFile(at: dir + "/other.ram")
            let otherManifest = try await Manifest.open(try await setup.store.get(StoreLayout.manifest(id: other.manifestID, root: .initial, tenant: .default)),
                                                        keys: setup.keys)
            let wrong = setup.image(base: otherManifest)
            let mismatch = await #expect(throws: ChunkFetchError.self) { try await wrong.read(offset: offset, length: 4096) }
            #expect("\(String(describing: mismatch))".contains("not the chunk"), "\(String(describing: mismatch))")
            #expect(try await setup.image().read(offset: offset, length: 4096) == Array(setup.derived[Int(offset)..<(Int(offset) + 4096)]))
        }
    }
}
