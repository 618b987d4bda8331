import ArgumentParser
import Foundation
import ThawFlatten
import ThawPush
import ThawSeal
import ThawCache
import ThawSample
import ThawServe
import ThawStore

/// `thaw demo`: the main job on embedded defaults. Generates two sample images that share
/// their first two layers, flattens them, and shows what Thaw's layout buys: a clean
/// filesystem, byte-identical output on a second run, and chunks shared between the images.
/// Then pushes both to a directory store (the second push reuses the shared layers without
/// reading them), pulls one back, verified and identical to its flattened image, and reads the
/// other lazily through the agent's read path.
struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Build sample images, flatten them and show what happened.")

    @Option(help: "Directory for the sample images and their ext4 images.")
    var work: String = NSTemporaryDirectory() + "thaw-demo"

    func run() async throws {
        try? FileManager.default.removeItem(atPath: work)
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        let layout = work + "/oci"
        print("1. Writing two sample OCI images to \(layout) (3 layers: gzip, zstd, plain tar; they differ only in the top layer)")
        try SampleImage.write(to: layout, tag: "sample-a", variant: 1)
        try SampleImage.write(to: layout, tag: "sample-b", variant: 2)

        let chunk = Flattener.defaultChunkSize
        var images: [String] = []
        for tag in ["sample-a", "sample-b"] {
            let output = "\(work)/\(tag).ext4"
            print("\n2. thaw flatten oci:\(layout):\(tag) -o \(output)")
            let (summary, elapsed) = try FlattenCommand.run(image: "oci:\(layout):\(tag)", output: output, platform: "linux/amd64", chunkSize: chunk)
            print(FlattenCommand.describe(summary, output: output, elapsed: elapsed))
            images.append(output)
        }

        print("\n3. Checking the filesystem with e2fsck -fn")
        for image in images { print("   \(image): \(fsck(image))") }

        let again = work + "/sample-a.again.ext4"
        _ = try FlattenCommand.run(image: "oci:\(layout):sample-a", output: again, platform: "linux/amd64", chunkSize: chunk)
        let identical = FileManager.default.contentsEqual(atPath: images[0], andPath: again)
        print("\n4. Flattening sample-a a second time: \(identical ? "byte-identical" : "DIFFERENT")")

        let a = try ChunkCensus(path: images[0], chunkSize: chunk)
        let b = try ChunkCensus(path: images[1], chunkSize: chunk)
        print("\n5. Chunks of \(chunk / 1024) KiB (all-zero chunks are never stored):")
        print("   sample-a: \(a.totalChunks) chunks, \(a.chunks.count) distinct non-zero")
        print("   sample-b: \(b.totalChunks) chunks, \(b.chunks.count) distinct non-zero")
        print("   shared:   \(a.shared(with: b)) chunks (the two common layers' regions)")
        if !identical { throw ValidationFailure("flattening is not deterministic") }

        var storeArguments = try StoreArguments.parse([])
        storeArguments.store = work + "/store"
        storeArguments.keys = work + "/keys"
        print("\n6. Pushing both images to the directory store \(work)/store (tenant key in \(work)/keys)")
        var manifests: [String] = []
        for tag in ["sample-a", "sample-b"] {
            print("\n   thaw push oci:\(layout):\(tag) --store \(work)/store")
            let report = try await PushCommand.run(image: "oci:\(layout):\(tag)", store: storeArguments, tenant: Tenant.default.name,
                                                   platform: "linux/amd64", chunkSize: chunk, concurrency: 8)
            print(PushCommand.describe(report, store: work + "/store").split(separator: "\n").map { "   " + $0 }.joined(separator: "\n"))
            manifests.append(report.manifestID)
        }

        let pulled = work + "/sample-b.pulled.ext4"
        print("\n7. thaw pull \(manifests[1].prefix(12)) -o \(pulled)")
        let store = try await storeArguments.open(create: false)
        let found = try await ManifestLookup.find(manifests[1], in: store, root: .initial)
        let manifest = try await Manifest.open(found.bytes, keys: storeArguments.keyProvider)
        let report = try await Puller(store: store, keys: storeArguments.keyProvider).pull(manifest, to: pulled)
        let same = FileManager.default.contentsEqual(atPath: pulled, andPath: images[1])
        print("   \(report.chunksFetched) chunks fetched and verified, \(report.zeroChunks) zero; \(same ? "byte-identical to" : "DIFFERENT from") the flattened sample-b")
        if !same { throw ValidationFailure("the pulled image differs from the flattened one") }

        try await serveLazily(manifests[0], flattened: images[0], store: store, keys: storeArguments.keyProvider)
    }

    /// Step 8: the read path an agent serves through, in process: only the chunks read are
    /// fetched, each once, and a second pass comes from the L1 cache.
    private func serveLazily(_ id: String, flattened: String, store: any ChunkStore, keys: LocalKeyProvider) async throws {
        print("\n8. Serving sample-a lazily (what thaw agent, serve and mount do), with a 64 MiB L1 cache")
        let found = try await ManifestLookup.find(id, in: store, root: .initial)
        let manifest = try await Manifest.open(found.bytes, keys: keys)
        let image = LazyImage(manifest: manifest, store: store, cache: try L1Cache(L1Configuration(memoryCapacity: 64 << 20)))
        let superblock = try await image.read(offset: 1024, length: 1024)
        let magic = UInt16(superblock[56]) | UInt16(superblock[57]) << 8
        print("   the ext4 superblock (magic 0x\(String(magic, radix: 16))): \(image.statistics.originFetches) of \(manifest.storedChunks) stored chunks fetched")
        let expected = try Data(contentsOf: URL(fileURLWithPath: flattened))
        for pass in 1...2 {
            let before = image.statistics.originFetches
            var offset: UInt64 = 0
            var whole = Data()
            while offset < image.size {
                let length = Int(min(1 << 20, image.size - offset))
                whole.append(contentsOf: try await image.read(offset: offset, length: length))
                offset += UInt64(length)
            }
            let fetched = image.statistics.originFetches - before
            print("   reading all of it, pass \(pass): \(fetched) chunks fetched from the store; \(whole == expected ? "byte-identical to" : "DIFFERENT from") the flattened sample-a")
            if whole != expected { throw ValidationFailure("the lazily read image differs from the flattened one") }
        }
    }

    private func fsck(_ image: String) -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["e2fsck", "-fn", image]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        do {
            try process.run()
        } catch {
            return "e2fsck not available (\(error))"
        }
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let last = output.split(separator: "\n").last.map(String.init) ?? ""
        return process.terminationStatus == 0 ? "clean (\(last))" : "PROBLEMS (exit \(process.terminationStatus)):\n\(output)"
    }
}
