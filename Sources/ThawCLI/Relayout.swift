import ArgumentParser
import Foundation
import ThawMetadata
import ThawPush
import ThawSeal
import ThawStore

/// `thaw relayout FUNCTION`: lays a pushed image out again around what its recorded start read.
struct Relayout: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Lay a pushed image out again so that its starts read few chunks.",
        discussion: """
            The file and directory blocks the image's recorded start read (its access record, saved \
            by the agent after the first start) are copied, in the order read, into a hot region \
            next to the metadata, and the files point at the copies. Layer regions stay as they \
            were, so their chunks are still shared; no layer is read. The new manifest gets a \
            record of its own, so its next start prefetches the hot region. Given a function name, \
            the name then points at the new manifest.
            """
    )

    @Argument(help: "A function name, or a manifest id (or a unique prefix of at least 8 hex digits).")
    var function: String

    @Option(help: "Chunks sealed and uploaded at once.")
    var concurrency: Int = 8

    @OptionGroup var storeArguments: StoreArguments

    func run() async throws {
        guard concurrency >= 1 else { throw ValidationError("--concurrency must be at least 1") }
        do {
            let name = try? FunctionName(function)
            let named = try await storeArguments.withMetadata(create: false) { metadata -> FunctionRecord? in
                guard let name, let metadata else { return nil }
                return try await metadata.function(named: name)
            }
            let report = try await Self.layOut(named?.manifestID ?? function, named: named, storeArguments: storeArguments,
                                               concurrency: concurrency)
            let h = report.header
            let hot = h.hot.map { "\(mib($0.length)) at \(mib($0.offset))" } ?? "none"
            print("laid out manifest \(report.originalID) again as \(report.manifestID) in \(String(format: "%.2f", report.seconds)) s")
            print("  hot region: \(report.hotBlocks) blocks, \(hot); image \(mib(h.imageSize))")
            print("  chunks: \(report.progress.chunksNew) new, \(report.progress.chunksPresent) already stored, \(report.progress.chunksReused) kept from layer regions")
            print("  a start now prefetches \(report.recordChunks) chunks (\(mib(UInt64(report.recordChunks) * UInt64(h.chunkSize)))), against \(report.originalRecordChunks) before")
            if let named { print("  name: \(named.name) → \(report.manifestID)") }
        } catch let failure as ValidationFailure {
            throw failure
        } catch {
            throw ValidationFailure(CommandErrors.describe(error))
        }
    }

    /// What `layOutAfterStart` did.
    enum AfterStart {
        case laidOut(RelayoutReport)
        /// The manifest has a memory snapshot, and was left as it is.
        case hasSnapshot
    }

    /// Lays out again the image a function name points at, once a start of it has recorded what
    /// it read, and moves the name to the result (`layOut`): `thaw run NAME` and `thaw serve-api`
    /// do this after a name's first start. An image with a memory snapshot is left as it is: the
    /// new manifest would have none, and its starts would boot cold.
    ///
    /// `willMove` hears the new manifest's id before the name moves to it.
    static func layOutAfterStart(_ named: FunctionRecord, storeArguments: StoreArguments,
                                 willMove: @Sendable (String) -> Void = { _ in }) async throws -> AfterStart {
        var storeArguments = storeArguments
        storeArguments.root = named.root.value
        let store = try await storeArguments.open(create: false)
        if try await store.exists(StoreLayout.snapshot(id: named.manifestID, root: named.root, tenant: named.tenant)) {
            return .hasSnapshot
        }
        return .laidOut(try await layOut(named.manifestID, named: named, storeArguments: storeArguments, concurrency: 8,
                                         willMove: willMove))
    }

    /// Lays the manifest `reference` names out again around its access record, records the new
    /// manifest in the metadata and, given `named`, points that name at it unless the name has
    /// moved since `named` was read (then it throws, the new manifest recorded but not named).
    /// `thaw run` does this after a function name's start.
    /// The name keeps its `updatedAt`: its code is the same, only laid out differently.
    static func layOut(_ reference: String, named: FunctionRecord?, storeArguments: StoreArguments,
                       concurrency: Int, willMove: @Sendable (String) -> Void = { _ in }) async throws -> RelayoutReport {
        let store = try await storeArguments.open(create: false)
        let found = try await storeArguments.withMetadata(create: false) { metadata in
            try await ManifestLookup.find(reference, in: store, roots: try await storeArguments.readRoots(metadata), metadata: metadata)
        }
        let keys = storeArguments.keyProvider
        let manifest = try await Manifest.open(found.bytes, keys: keys, what: "manifest \(found.key)")
        let header = manifest.header
        // The new manifest goes into the manifest's root and keeps its region chunks there:
        // only the active root takes new manifests (an older one is on its way out).
        let active = try await storeArguments.withMetadata(create: false) { try await $0?.activeRoot().id }
        if let active, active != header.root {
            throw ValidationFailure("manifest \(header.id) is in root \(header.root), not in the active root \(active): push the image again and lay that out")
        }
        let record = try await Inspect.accessRecord(of: header, in: store, keys: keys)
        var options = PushOptions()
        options.tenant = header.tenant
        options.root = header.root
        options.chunkSize = UInt64(header.chunkSize)
        options.concurrency = concurrency
        let report = try await Pusher(store: store, keys: keys, options: options).relayout(manifest, record: record)
        let h = report.header
        try await storeArguments.withMetadata(create: false) { metadata in
            guard let metadata else { return }
            let now = Date()
            try await metadata.addManifest(ManifestRecord(id: report.manifestID, root: h.root, tenant: h.tenant,
                                                          imageSize: h.imageSize, chunkCount: h.chunkCount, createdAt: now))
            // Only if the name still points where it did: a push meanwhile wins. (A start that
            // laid out the same record at the same time already moved it to the same manifest.)
            guard let named else { return }
            willMove(report.manifestID)
            let moved = try await metadata.moveFunction(FunctionRecord(name: named.name, manifestID: report.manifestID, root: h.root,
                                                                       tenant: h.tenant, updatedAt: named.updatedAt),
                                                        fromManifest: named.manifestID, root: named.root)
            if !moved, try await metadata.function(named: named.name)?.manifestID != report.manifestID {
                throw ValidationFailure("function \(named.name) no longer points at manifest \(named.manifestID): it keeps what it points at now, and \(report.manifestID) (recorded, in root \(h.root)) is not named")
            }
        }
        return report
    }
}
