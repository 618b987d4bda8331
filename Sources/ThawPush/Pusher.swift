import Foundation
public import ThawFlatten
public import ThawImage
public import ThawSeal
public import ThawStore
import Synchronization

/// Settings of a push.
public struct PushOptions: Sendable {
    public var tenant: Tenant = .default
    public var root: RootID = .initial
    public var chunkSize: UInt64 = Flattener.defaultChunkSize
    /// How many salt replicas a root spreads tenants over (see `Salt`).
    public var saltReplicas = 1
    /// Chunks sealed or uploaded at once.
    public var concurrency = 8
    /// Where the filesystem metadata waits until the end of the flatten.
    public var temporaryDirectory = ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp"

    public init() {}
}

/// Where a push stands, for a progress display.
public struct PushProgress: Sendable, Equatable {
    /// Uncompressed file bytes the flattener has read from layers.
    public var bytesRead: UInt64 = 0
    /// Chunks sealed and uploaded because the store lacked them.
    public var chunksNew = 0
    /// Chunks sealed and found already in the store.
    public var chunksPresent = 0
    public var chunksZero = 0
    /// Chunks taken from layer records without reading their layer.
    public var chunksReused = 0
    public var bytesUploaded: UInt64 = 0
}

/// What a push did.
public struct PushReport: Sendable {
    public var manifestID: String
    public var manifestKey: StoreKey
    public var header: ManifestHeader
    public var progress: PushProgress
    public var flatten: FlattenSummary
    /// Layers laid out from their records, not read.
    public var layersReused: Int
    public var seconds: Double
}

/// Flattens an image, seals its chunks and uploads the ones the store lacks, in one pass: the
/// flattener runs on its own thread and hands over each chunk as it fills; sealing and uploads
/// run concurrently on the other cores, at most `concurrency` chunks at a time.
///
/// Crash safety comes from ordering: chunks first, then the layer records that list them, then
/// the image config record, then the manifest, written atomically. A push killed at any point
/// leaves no manifest pointing at a missing chunk or lacking its config, and running it again
/// uploads only what is still missing.
public struct Pusher: Sendable {
    public var store: any ChunkStore
    public var keys: any TenantKeyProvider
    public var options: PushOptions
    public var progress: (@Sendable (PushProgress) -> Void)?

    public init(store: any ChunkStore, keys: any TenantKeyProvider, options: PushOptions = PushOptions(),
                progress: (@Sendable (PushProgress) -> Void)? = nil) {
        self.store = store
        self.keys = keys
        self.options = options
        self.progress = progress
    }

    public func push(_ image: Image) async throws -> PushReport {
        let started = ContinuousClock.now
        MallocTuning.keepLargeBuffers()
        let tenant = options.tenant
        let chunkSize = options.chunkSize
        let salt = Salt(root: options.root, replica: Salt.replica(forTenant: tenant.name, replicas: options.saltReplicas))
        // The config is stored under the manifest as the image's identity; refuse bytes that are
        // not that identity before any work, rather than store a record no reader can open.
        let configDigest = ThawImage.Digest.of(image.configBytes)
        guard configDigest == image.configDigest else {
            throw PushError("the config of \(image.reference) hashes to \(configDigest), not to its digest \(image.configDigest)")
        }
        let records = try await knownLayers(image, salt: salt)

        let state = PushState()
        let channel = ChunkChannel(capacity: options.concurrency + 4)
        let temporaryDirectory = options.temporaryDirectory
        let report = progress
        let flattening = Task.detached { () throws -> FlattenSummary in
            try await Self.onThread {
                defer { channel.finish() }
                let output = try SealingOutput(chunkSize: Int(chunkSize), channel: channel, temporaryDirectory: temporaryDirectory)
                output.onAppend = { bytes in
                    if let snapshot = state.add(read: bytes), let report { report(snapshot) }
                }
                return try Flattener(chunkSize: chunkSize).flatten(image, into: output, knownLayer: { records[$0.diffID]?.index },
                                             recordIndexes: true)
            }
        }

        var table: [Int: ChunkRef] = [:]
        do {
            table = try await sealAndUpload(channel, salt: salt, state: state)
        } catch {
            channel.close()
            _ = try? await flattening.value
            throw error
        }
        let summary = try await flattening.value

        // Chunks of reused regions come from their records.
        var reusedLayers = 0
        for region in summary.regions where region.reused {
            guard let record = records[region.diffID] else { continue }
            reusedLayers += 1
            let first = Int(region.offset / chunkSize)
            for (i, chunk) in record.chunks.enumerated() {
                if let chunk { table[first + i] = chunk }
            }
            state.reused(record.chunks.count)
        }

        let header = ManifestHeader(
            imageDigest: summary.configDigest.bytes, imageSize: summary.imageSize, chunkSize: UInt32(chunkSize),
            root: options.root, saltReplica: salt.replica, tenant: tenant,
            layers: summary.regions.map { .init(diffID: $0.diffID.bytes, offset: $0.offset, length: $0.length) })
        let manifest = Manifest(header: header, chunks: (0..<header.chunkCount).map { table[$0] })

        // Every chunk is stored by now; make them durable before anything refers to them.
        try await store.sync()

        // Records for the layers just read: their chunks are all stored by now.
        for (region, index) in zip(summary.regions, summary.layerIndexes) {
            guard let index else { continue }
            let first = Int(region.offset / chunkSize)
            let count = Int((region.length + chunkSize - 1) / chunkSize)
            let record = LayerRecord(diffID: region.diffID.bytes, chunkSize: UInt32(chunkSize), salt: salt,
                                     chunks: (first..<(first + count)).map { table[$0] }, index: index)
            let key = LayerRecord.key(diffID: record.diffID, chunkSize: record.chunkSize, salt: salt, tenant: tenant)
            try await store.put(key, try await record.sealed(tenant: tenant, keys: keys))
        }

        // The image config, so that the image can be run from the store alone. Before the
        // manifest: a manifest, once visible, always has its config.
        let configKey = StoreLayout.imageConfig(id: header.id, root: options.root, tenant: tenant)
        let configRecord = ImageConfigRecord(manifestID: header.id, configJSON: image.configBytes)
        try await store.put(configKey, try await configRecord.sealed(tenant: tenant, keys: keys))

        let manifestKey = StoreLayout.manifest(id: header.id, root: options.root, tenant: tenant)
        try await store.put(manifestKey, try await manifest.sealed(keys: keys))
        let final = state.snapshot()
        progress?(final)
        return PushReport(manifestID: header.id, manifestKey: manifestKey, header: header, progress: final,
                          flatten: summary, layersReused: reusedLayers,
                          seconds: (ContinuousClock.now - started).seconds)
    }

    /// Layer records already in the store for this image's layers, by diff ID.
    func knownLayers(_ image: Image, salt: Salt) async throws -> [ThawImage.Digest: LayerRecord] {
        var records: [ThawImage.Digest: LayerRecord] = [:]
        for layer in image.layers where records[layer.diffID] == nil {
            let key = LayerRecord.key(diffID: layer.diffID.bytes, chunkSize: UInt32(options.chunkSize), salt: salt, tenant: options.tenant)
            let bytes: [UInt8]
            do {
                bytes = try await store.get(key)
            } catch let error as StoreError where error.kind == .notFound {
                continue
            }
            records[layer.diffID] = try await LayerRecord.open(
                bytes, expecting: layer.diffID.bytes, chunkSize: UInt32(options.chunkSize), salt: salt,
                tenant: options.tenant, keys: keys, what: "layer record \(key) in \(store.location)")
        }
        return records
    }

    /// Consumes the channel: seals each chunk, checks the store, uploads what is missing.
    /// - Parameter patching: for a snapshot's RAM pushed against a base: a chunk the store
    ///   lacks is offered to it, and when it gives a delta, the delta is sealed and stored in the
    ///   chunk's place and noted in `patched` (the chunk's own ref still goes into the table).
    func sealAndUpload(_ channel: ChunkChannel, salt: Salt, state: PushState, patching: FilePatching? = nil,
                       patched: Locked<[Int: ChunkRef]>? = nil) async throws -> [Int: ChunkRef] {
        let store = store
        let root = options.root
        let report = progress
        let claimed = Locked(Set<ChunkName>())
        return try await withThrowingTaskGroup(of: (Int, ChunkRef?).self) { group in
            var table: [Int: ChunkRef] = [:]
            var running = 0
            for await job in channel.jobs {
                if running >= options.concurrency, let (index, ref) = try await group.next() {
                    running -= 1
                    table[index] = ref
                }
                running += 1
                group.addTask {
                    defer { channel.release() }
                    let outcome: ChunkOutcome
                    var ref: ChunkRef?
                    if job.plaintext.allSatisfy({ $0 == 0 }) {
                        outcome = .zero
                    } else {
                        let sealed = ChunkSealer.seal(job.plaintext, salt: salt)
                        ref = ChunkRef(name: sealed.name, key: sealed.key)
                        // Against a base, a chunk seen before in this push may have gone in as a
                        // delta: each one is looked up, and equal chunks give equal deltas.
                        let first = patching != nil || claimed.withLock { $0.insert(sealed.name).inserted }
                        var present = !first
                        if !present { present = try await store.hasChunk(sealed.name, root: root) }
                        if present {
                            outcome = .present
                        } else if let patching, let patched, let delta = patching.delta(job.plaintext, job.index) {
                            let sealedDelta = ChunkSealer.seal(delta, salt: salt)
                            let deltaRef = ChunkRef(name: sealedDelta.name, key: sealedDelta.key)
                            patched.withLock { $0[job.index] = deltaRef }
                            if try await store.hasChunk(sealedDelta.name, root: root) {
                                outcome = .present
                            } else {
                                try await store.putChunk(sealedDelta.name, sealedDelta.ciphertext, root: root)
                                outcome = .uploaded(UInt64(sealedDelta.ciphertext.count))
                            }
                        } else {
                            try await store.putChunk(sealed.name, sealed.ciphertext, root: root)
                            outcome = .uploaded(UInt64(sealed.ciphertext.count))
                        }
                    }
                    if let snapshot = state.record(outcome), let report { report(snapshot) }
                    return (job.index, ref)
                }
            }
            for try await (index, ref) in group { table[index] = ref }
            return table.compactMapValues { $0 }
        }
    }

    /// Runs blocking work on a thread of its own, off the concurrency pool.
    static func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                continuation.resume(with: Result { try body() })
            }
            thread.stackSize = 8 << 20
            thread.start()
        }
    }
}

enum ChunkOutcome {
    case zero
    case present
    case uploaded(UInt64)
}

/// Counters shared by the flattening thread and the upload tasks; hands out a snapshot for
/// display at most every 100 ms.
final class PushState: Sendable {
    private let state = Mutex((progress: PushProgress(), lastReport: ContinuousClock.now))

    func add(read bytes: UInt64) -> PushProgress? {
        state.withLock {
            $0.progress.bytesRead += bytes
            return Self.due(&$0)
        }
    }

    func record(_ outcome: ChunkOutcome) -> PushProgress? {
        state.withLock {
            switch outcome {
            case .zero: $0.progress.chunksZero += 1
            case .present: $0.progress.chunksPresent += 1
            case .uploaded(let bytes):
                $0.progress.chunksNew += 1
                $0.progress.bytesUploaded += bytes
            }
            return Self.due(&$0)
        }
    }

    func reused(_ chunks: Int) { state.withLock { $0.progress.chunksReused += chunks } }
    func snapshot() -> PushProgress { state.withLock { $0.progress } }

    private static func due(_ s: inout (progress: PushProgress, lastReport: ContinuousClock.Instant)) -> PushProgress? {
        let now = ContinuousClock.now
        guard now - s.lastReport >= .milliseconds(100) else { return nil }
        s.lastReport = now
        return s.progress
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
