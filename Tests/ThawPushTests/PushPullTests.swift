import Foundation
import Testing
import ThawFlatten
import ThawImage
import ThawPush
import ThawSeal
import ThawStore
import ThawTestSupport

/// Push and pull through a directory store: the pulled image is byte-identical to `thaw flatten`,
/// incremental pushes skip known layers, and every fault gives a clear error without losing data.
@Suite struct PushPullTests {
    struct Setup {
        let dir: String
        let layout: String
        let store: DirectoryStore
        let keys: LocalKeyProvider

        init(_ dir: String, variants: [String]) throws {
            self.dir = dir
            layout = dir + "/oci"
            for variant in variants { try Fixtures.make(variant, in: layout) }
            store = try DirectoryStore(path: dir + "/store", create: true)
            keys = LocalKeyProvider(directory: dir + "/keys")
        }

        func image(_ tag: String) throws -> Image { try Image.open(.ociLayout(path: layout, tag: tag)) }

        func push(_ tag: String, options: PushOptions = PushOptions()) async throws -> PushReport {
            try await Pusher(store: store, keys: keys, options: options).push(try image(tag))
        }

        func pull(_ report: PushReport, to path: String) async throws -> Puller.Report {
            let manifest = try await Manifest.open(try await store.get(report.manifestKey), keys: keys)
            return try await Puller(store: store, keys: keys).pull(manifest, to: path)
        }

        func flatten(_ tag: String, to path: String) throws -> FlattenSummary {
            try Flattener().flatten(try image(tag), to: path)
        }

        /// Every file in the store with its bytes.
        func snapshot() throws -> [String: Data] {
            var files: [String: Data] = [:]
            let root = store.root
            for case let path as String in FileManager.default.enumerator(atPath: root)! {
                var isDirectory: ObjCBool = false
                if FileManager.default.fileExists(atPath: root + "/" + path, isDirectory: &isDirectory), !isDirectory.boolValue {
                    files[path] = try Data(contentsOf: URL(fileURLWithPath: root + "/" + path))
                }
            }
            return files
        }
    }

    @Test func pullRebuildsTheFlattenedImageByteForByte() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let setup = try Setup(dir, variants: ["full"])
            let report = try await setup.push("full")
            let summary = try setup.flatten("full", to: dir + "/flat.ext4")
            #expect(report.header.imageSize == summary.imageSize)
            #expect(report.progress.chunksNew > 0)
            #expect(report.progress.chunksNew + report.progress.chunksPresent + report.progress.chunksZero <= report.header.chunkCount)
            let pulled = try await setup.pull(report, to: dir + "/pulled.ext4")
            #expect(pulled.chunksFetched + pulled.zeroChunks == report.header.chunkCount)
            #expect(FileManager.default.contentsEqual(atPath: dir + "/flat.ext4", andPath: dir + "/pulled.ext4"))
            #expect(try TestSupport.fsckProblems(dir + "/pulled.ext4") == nil)
            // Chunks in the store are ciphertext: no chunk equals its plaintext.
            let manifest = try await Manifest.open(try await setup.store.get(report.manifestKey), keys: setup.keys)
            let image = try Data(contentsOf: URL(fileURLWithPath: dir + "/flat.ext4"))
            for (index, chunk) in manifest.chunks.enumerated() {
                guard let chunk else {
                    #expect(image[(index * 512 * 1024)..<((index + 1) * 512 * 1024)].allSatisfy { $0 == 0 })
                    continue
                }
                let stored = try await setup.store.getChunk(chunk.name, root: .initial)
                #expect(stored.elementsEqual(image[(index * 512 * 1024)..<((index + 1) * 512 * 1024)]) == false)
            }
        }
    }

    /// An image whose lower layers were pushed before: those layers are not read, nothing is
    /// uploaded twice, and the result is still the same image.
    @Test func anIncrementalPushSkipsKnownLayers() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let setup = try Setup(dir, variants: ["shared-a", "shared-b"])
            let first = try await setup.push("shared-a")
            #expect(first.layersReused == 0)
            let before = try setup.snapshot()
            let second = try await setup.push("shared-b")
            #expect(second.layersReused == 2)
            #expect(second.flatten.regions.prefix(2).allSatisfy { $0.reused })
            #expect(second.progress.chunksReused > 0)
            let top = second.flatten.regions.last!
            #expect(second.progress.bytesRead <= top.length, "only the new top layer is read")
            let summary = try setup.flatten("shared-b", to: dir + "/flat.ext4")
            _ = try await setup.pull(second, to: dir + "/pulled.ext4")
            #expect(FileManager.default.contentsEqual(atPath: dir + "/flat.ext4", andPath: dir + "/pulled.ext4"))
            #expect(summary.imageSize == second.header.imageSize)
            // Nothing stored before changed.
            let after = try setup.snapshot()
            for (path, bytes) in before { #expect(after[path] == bytes, "\(path) is unchanged") }
            // Pushing the same image again uploads nothing.
            let again = try await setup.push("shared-b")
            #expect(again.progress.chunksNew == 0)
            #expect(again.layersReused == 3)
            #expect(again.manifestID == second.manifestID)
        }
    }

    @Test func aCorruptOrMissingChunkIsNamedAndNothingIsWritten() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let setup = try Setup(dir, variants: ["full"])
            let report = try await setup.push("full")
            let manifest = try await Manifest.open(try await setup.store.get(report.manifestKey), keys: setup.keys)
            let victim = manifest.chunks.compactMap { $0 }[1].name
            let path = setup.store.root + "/" + StoreLayout.chunk(victim, root: .initial).path
            var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
            bytes[100] ^= 0xff
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            let corrupt = await #expect(throws: StoreError.self) { try await setup.pull(report, to: dir + "/out.ext4") }
            #expect(corrupt?.kind == .corrupt)
            #expect(corrupt?.message.contains(victim.hex) == true)
            #expect(corrupt?.message.contains(setup.store.root) == true)
            #expect(!FileManager.default.fileExists(atPath: dir + "/out.ext4"))
            try FileManager.default.removeItem(atPath: path)
            let missing = await #expect(throws: StoreError.self) { try await setup.pull(report, to: dir + "/out.ext4") }
            #expect(missing?.kind == .notFound)
            #expect(missing?.message.contains(victim.hex) == true)
            // Pushing again repairs the store: the missing chunk is uploaded, the rest is not.
            var options = PushOptions()
            options.chunkSize = 512 * 1024
            let layerRecords = try await setup.store.listAll(under: "roots/r0001/layers")
            for key in layerRecords { try await setup.store.delete(key) }
            let repair = try await setup.push("full", options: options)
            #expect(repair.progress.chunksNew == 1)
            _ = try await setup.pull(repair, to: dir + "/out.ext4")
            #expect(try TestSupport.fsckProblems(dir + "/out.ext4") == nil)
        }
    }

    @Test func zeroChunksAreNotStoredAndReadBackAsZeros() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let setup = try Setup(dir, variants: ["full"])
            var options = PushOptions()
            options.chunkSize = 4096 * 4  // small chunks: the image has gaps of whole zero chunks
            let report = try await setup.push("full", options: options)
            #expect(report.progress.chunksZero > 0)
            let manifest = try Manifest.readPublic(try await setup.store.get(report.manifestKey))
            let zero = manifest.names.count(where: { $0 == nil })
            #expect(zero >= report.progress.chunksZero)
            let stored = try await setup.store.listAll(under: StoreLayout.chunks(root: .initial))
            #expect(stored.count == Set(manifest.names.compactMap { $0 }).count)
            _ = try await setup.pull(report, to: dir + "/pulled.ext4")
            _ = try Flattener(chunkSize: 4096 * 4).flatten(try setup.image("full"), to: dir + "/flat.ext4")
            #expect(FileManager.default.contentsEqual(atPath: dir + "/flat.ext4", andPath: dir + "/pulled.ext4"))
        }
    }

    @Test func aRefusedImageStoresNoManifest() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let setup = try Setup(dir, variants: ["full", "hostile-truncated"])
            _ = try await setup.push("full")
            let before = try setup.snapshot()
            let error = await #expect(throws: FlattenError.self) { try await setup.push("hostile-truncated") }
            #expect(error?.description.contains("layer") == true)
            let manifests = try await setup.store.listAll(under: StoreLayout.manifests(root: .initial))
            #expect(manifests.count == 1)
            let after = try setup.snapshot()
            for (path, bytes) in before { #expect(after[path] == bytes) }
        }
    }
}
