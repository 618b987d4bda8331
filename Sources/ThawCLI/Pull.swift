import ThawBinary
import ArgumentParser
import Foundation
import ThawPush
import ThawSeal
import ThawStore

/// `thaw pull MANIFEST -o FILE`: rebuild an image from its chunks, verifying each.
struct Pull: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Rebuild an image file from a manifest, verifying every chunk.")

    @Argument(help: "Manifest id, or a unique prefix of at least 8 hex digits.")
    var manifest: String

    @Option(name: .shortAndLong, help: "Where to write the image.")
    var output: String

    @Option(help: "Chunks fetched at once.")
    var concurrency: Int = 16

    @Option(help: "Milliseconds added before every origin read, to emulate a remote object store (benchmarks).")
    var originLatency: Double = 0

    @OptionGroup var storeArguments: StoreArguments

    func run() async throws {
        guard concurrency >= 1, originLatency >= 0 else {
            throw ValidationError("--concurrency must be at least 1 and --origin-latency at least 0")
        }
        do {
            let started = ContinuousClock.now
            var store = try await storeArguments.open(create: false)
            if originLatency > 0 { store = LatencyStore(store, delay: .microseconds(Int64(originLatency * 1000))) }
            let found = try await storeArguments.withMetadata(create: false) { metadata in
                try await ManifestLookup.find(manifest, in: store, roots: try await storeArguments.readRoots(metadata), metadata: metadata)
            }
            let opened = try await Manifest.open(found.bytes, keys: storeArguments.keyProvider, what: "manifest \(found.key)")
            var puller = Puller(store: store, keys: storeArguments.keyProvider)
            puller.concurrency = concurrency
            let report = try await puller.pull(opened, to: output)
            let elapsed = ContinuousClock.now - started
            print("pulled manifest \(found.key.name) → \(output) in \(String(format: "%.2f", Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)) s")
            print("  \(mib(report.header.imageSize)): \(report.chunksFetched) chunks fetched and verified (\(mib(report.bytesFetched))), \(report.zeroChunks) zero\(report.chunksRebuilt > 0 ? ", \(report.chunksRebuilt) rebuilt from deltas" : "")")
        } catch {
            throw ValidationFailure(CommandErrors.describe(error))
        }
    }
}

/// `thaw inspect MANIFEST`: what a manifest holds, without any key.
struct Inspect: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show a manifest's size, chunks and layers (needs no key).")

    @Argument(help: "Manifest id, or a unique prefix of at least 8 hex digits.")
    var manifest: String

    @OptionGroup var storeArguments: StoreArguments

    func run() async throws {
        do {
            let store = try await storeArguments.open(create: false)
            let found = try await storeArguments.withMetadata(create: false) { metadata in
                try await ManifestLookup.find(manifest, in: store, roots: try await storeArguments.readRoots(metadata), metadata: metadata)
            }
            let i = try await Inspection.inspect(found, in: store)
            let h = i.header
            print("manifest \(i.id)")
            print("  image: sha256:\(Hex.encode(h.imageDigest)), \(mib(h.imageSize))")
            print("  tenant \(h.tenant), root \(h.root), salt replica \(h.saltReplica), chunk size \(h.chunkSize / 1024) KiB")
            print("  chunks: \(i.chunks) total, \(i.storedChunks) stored (\(i.distinctChunks) distinct), \(i.zeroChunks) zero, \(i.sharedChunks) shared with \(i.otherManifests) other manifest(s) in the root")
            print("  layers: \(h.layers.count)")
            for (n, layer) in h.layers.enumerated() {
                print("    \(n + 1). sha256:\(Hex.encode(layer.diffID)) at \(mib(layer.offset)), \(mib(layer.length))")
            }
        } catch {
            throw ValidationFailure(CommandErrors.describe(error))
        }
    }
}
