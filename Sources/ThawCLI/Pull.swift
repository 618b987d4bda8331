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

/// `thaw inspect MANIFEST`: what a manifest holds, without any key; with `--record`, also what
/// its recorded start read (that needs the tenant's key, since the order is sealed).
struct Inspect: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a manifest's size, chunks and layers (needs no key).",
        discussion: """
            --record adds the manifest's access record: the chunks and 4 KiB blocks its recorded \
            start read, in the order first read (this needs the tenant's key). --json prints the \
            same as one JSON object, the record's blocks as [first block, count] runs.
            """)

    @Argument(help: "Manifest id, or a unique prefix of at least 8 hex digits.")
    var manifest: String

    @Flag(help: "Also show what the manifest's recorded start read (needs the tenant's key).")
    var record = false

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    @OptionGroup var storeArguments: StoreArguments

    func run() async throws {
        do {
            let store = try await storeArguments.open(create: false)
            let found = try await storeArguments.withMetadata(create: false) { metadata in
                try await ManifestLookup.find(manifest, in: store, roots: try await storeArguments.readRoots(metadata), metadata: metadata)
            }
            let i = try await Inspection.inspect(found, in: store)
            let accessRecord = record ? try await Self.accessRecord(of: i.header, in: store, keys: storeArguments.keyProvider) : nil
            if json {
                print(try Self.json(i, record: accessRecord))
                return
            }
            let h = i.header
            print("manifest \(i.id)")
            print("  image: sha256:\(Hex.encode(h.imageDigest)), \(mib(h.imageSize))")
            print("  tenant \(h.tenant), root \(h.root), salt replica \(h.saltReplica), chunk size \(h.chunkSize / 1024) KiB")
            print("  chunks: \(i.chunks) total, \(i.storedChunks) stored (\(i.distinctChunks) distinct), \(i.zeroChunks) zero, \(i.sharedChunks) shared with \(i.otherManifests) other manifest(s) in the root")
            print("  layers: \(h.layers.count)")
            for (n, layer) in h.layers.enumerated() {
                print("    \(n + 1). sha256:\(Hex.encode(layer.diffID)) at \(mib(layer.offset)), \(mib(layer.length))")
            }
            if let accessRecord {
                let blocks = accessRecord.blocks.reduce(0) { $0 + UInt64($1.count) }
                let chunkBytes = UInt64(accessRecord.chunks.count) * UInt64(h.chunkSize)
                print("  record: \(accessRecord.chunks.count) chunks read (\(mib(chunkBytes)), \(percent(chunkBytes, of: h.imageSize)) of the image), "
                      + "\(blocks) blocks (\(mib(blocks * 4096)), \(percent(blocks * 4096, of: h.imageSize))) in \(accessRecord.blocks.count) runs")
            }
        } catch {
            throw ValidationFailure(CommandErrors.describe(error))
        }
    }

    /// The access record saved beside the manifest (`thaw inspect --record`, `thaw relayout`).
    ///
    /// - Throws: `ValidationFailure` when none is saved yet, else what opening it threw.
    static func accessRecord(of header: ManifestHeader, in store: any ChunkStore, keys: any TenantKeyProvider) async throws -> AccessRecord {
        let key = ManifestLocation(header).accessRecord
        guard let sealed = try await store.getIfPresent(key) else {
            throw ValidationFailure("manifest \(header.id) has no access record at \(key) yet: start it once (thaw run) so the agent records what it reads")
        }
        return try await AccessRecord.open(sealed, for: header, keys: keys, what: "access record \(key)")
    }

    static func json(_ i: Inspection, record: AccessRecord?) throws -> String {
        let h = i.header
        var object: [String: Any] = [
            "id": i.id, "imageDigest": "sha256:" + Hex.encode(h.imageDigest), "imageSize": h.imageSize,
            "tenant": h.tenant.description, "root": h.root.description, "chunkSize": h.chunkSize,
            "chunks": i.chunks, "storedChunks": i.storedChunks, "distinctChunks": i.distinctChunks,
            "zeroChunks": i.zeroChunks, "sharedChunks": i.sharedChunks, "otherManifests": i.otherManifests,
            "layers": h.layers.map { ["diffID": "sha256:" + Hex.encode($0.diffID), "offset": $0.offset, "length": $0.length] as [String: Any] },
        ]
        if let record {
            object["record"] = ["chunks": record.chunks.map(Int.init), "blocks": record.blocks.map { [Int($0.first), Int($0.count)] }]
        }
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }

    private func percent(_ part: UInt64, of whole: UInt64) -> String {
        String(format: "%.1f%%", 100 * Double(part) / Double(max(whole, 1)))
    }
}
