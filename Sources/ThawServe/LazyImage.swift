public import ThawCache
public import ThawL2
public import ThawSeal
public import ThawStore
import Synchronization

/// Serves reads of one pushed image from its opened manifest, fetching only the chunks that are
/// read: zero chunks cost nothing, cached chunks come from L1, the rest from the shared L2 cache
/// or else the origin store, with one fetch per chunk however many readers want it. Only the bytes asked for are decrypted
/// (AES-CTR decrypts any range alone).
///
/// State lives behind short mutex sections rather than an actor, so a cache hit never queues
/// behind a hop to an executor; every wait (origin fetches, deadlines) happens outside them.
public final class LazyImage: Sendable {
    public let manifest: Manifest
    public let store: any ChunkStore
    public let cache: L1Cache?
    /// The workers' shared L2 cache, asked before the origin; nil goes straight to the origin.
    public let l2: L2Cache?
    public let configuration: LazyImageConfiguration

    let chunkSize: UInt64
    let limiter: FetchLimiter
    let state = Mutex(ServeState())
    let counters = Mutex(LazyImageStatistics())

    /// The worker's serving figures (shared by every image it serves).
    public let metrics: ServeMetrics
    /// Notes this start's first reads for the next start's prefetch; nil when not recording.
    public let recorder: AccessRecorder?
    /// For a snapshot's RAM stored partly as deltas: the patch table and the base snapshot's
    /// RAM to rebuild those chunks from.
    public let patches: ChunkPatches?

    /// - Parameters:
    ///   - manifest: an opened manifest (`Manifest.open` with the tenant's keys).
    ///   - store: the origin; chunks are read with `getChunk`, which checks them against their names.
    ///   - cache: the worker's L1 cache, shared with other images; fetched chunks are put into it.
    ///   - l2: the shared L2 cache: asked on an L1 miss, and given what the origin returns.
    ///   - metrics: where reads, tiers, latencies and fetches are reported.
    ///   - recorder: notes the chunks read, in first-touch order, while it records.
    ///   - patches: the manifest's patch table and its base's image, when it has one.
    public init(manifest: Manifest, store: any ChunkStore, cache: L1Cache? = nil, l2: L2Cache? = nil,
                configuration: LazyImageConfiguration = LazyImageConfiguration(),
                metrics: ServeMetrics = ServeMetrics(), recorder: AccessRecorder? = nil, patches: ChunkPatches? = nil) {
        self.manifest = manifest
        self.store = store
        self.cache = cache
        self.l2 = l2
        self.configuration = configuration
        self.metrics = metrics
        self.recorder = recorder
        self.patches = patches
        chunkSize = UInt64(manifest.header.chunkSize)
        limiter = FetchLimiter(limit: configuration.maximumOriginFetches,
                               readAheadLimit: configuration.readAheadFetchLimit)
    }

    /// The size of the flattened image in bytes.
    public var size: UInt64 { manifest.header.imageSize }

    public var statistics: LazyImageStatistics { counters.withLock { $0 } }

    /// The bytes of the flattened image in `offset ..< offset + length`.
    ///
    /// - Throws: `ReadOutOfRangeError` past the end, `ChunkDeadlineError` when a chunk does not
    ///   arrive within the deadline, `ChunkFetchError` when neither L2 nor the origin can give a chunk.
    public func read(offset: UInt64, length: Int) async throws -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(max(0, length))
        try await read(offset: offset, length: length, into: &bytes)
        return bytes
    }

    /// Appends the bytes of the flattened image in `offset ..< offset + length` to `sink`
    /// (a server's reply buffer), decrypting each piece straight into it. On a throw the sink
    /// may hold part of the bytes.
    public func read<Sink: ReadSink>(offset: UInt64, length: Int, into sink: inout Sink) async throws {
        guard let span = try beginRead(offset: offset, length: length) else { return }
        do {
            for index in span.first...span.last {
                if servePieceNow(index, of: span, into: &sink) { continue }
                let (lower, upper) = span.bounds(of: index, chunkSize: chunkSize)
                let pieceStarted = ContinuousClock.now
                let ref = manifest.chunks[index]!
                let (ciphertext, tier) = try await self.ciphertext(of: index, ref)
                sink.append(count: upper - lower) { ChunkSealer.decrypt(ciphertext, range: lower..<upper, key: ref.key, into: $0) }
                metrics.served(tier, bytes: upper - lower, since: pieceStarted)
            }
        } catch {
            metrics.readErrors.increment()
            throw error
        }
        metrics.readDuration.recordNanoseconds((ContinuousClock.now - span.started).nanoseconds)
    }

    /// The bytes in `offset ..< offset + length` when every chunk they need is a zero chunk or
    /// in memory, read on the calling thread: a FUSE thread answers a cache hit without handing
    /// the read to a task and waiting for it. Nil, with nothing counted, when a chunk must come
    /// from disk, L2 or the origin (or the range is bad): then `read` does it.
    ///
    /// A chunk evicted between the check and its read also gives nil, after the read was
    /// counted once: `read` then counts it again. That is rare, and costs a figure, not a byte.
    public func readNow(offset: UInt64, length: Int) -> [UInt8]? {
        guard length > 0, offset <= size, UInt64(length) <= size - offset else { return nil }
        let first = Int(offset / chunkSize), last = Int((offset + UInt64(length) - 1) / chunkSize)
        guard (first...last).allSatisfy(isInMemory) else { return nil }
        guard let span = try? beginRead(offset: offset, length: length) else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(length)
        for index in first...last where !servePieceNow(index, of: span, into: &bytes) {
            return nil
        }
        metrics.readDuration.recordNanoseconds((ContinuousClock.now - span.started).nanoseconds)
        return bytes
    }

    /// A read's range in chunks, and when it began.
    struct ReadSpan {
        let offset: UInt64
        let end: UInt64
        let first: Int
        let last: Int
        let started: ContinuousClock.Instant

        /// The part of chunk `index` the read covers, as offsets within the chunk.
        func bounds(of index: Int, chunkSize: UInt64) -> (lower: Int, upper: Int) {
            let chunkStart = UInt64(index) * chunkSize
            return (Int(max(offset, chunkStart) - chunkStart), Int(min(end, chunkStart + chunkSize) - chunkStart))
        }
    }

    /// Checks the range, counts the read, notes it for read-ahead and the recorder; nil for an
    /// empty read.
    func beginRead(offset: UInt64, length: Int) throws -> ReadSpan? {
        guard length >= 0, offset <= size, UInt64(length) <= size - offset else {
            metrics.readErrors.increment()
            throw ReadOutOfRangeError(offset: offset, length: length, imageSize: size)
        }
        let started = ContinuousClock.now
        counters.withLock {
            $0.reads += 1
            $0.bytesRead += UInt64(length)
        }
        metrics.reads.increment()
        metrics.readBytes.increment(by: length)
        guard length > 0 else { return nil }
        let end = offset + UInt64(length)
        let span = ReadSpan(offset: offset, end: end, first: Int(offset / chunkSize), last: Int((end - 1) / chunkSize), started: started)
        noteRead(offset: offset, end: end, endingIn: span.last)
        recorder?.touchBlocks(offset: offset, end: end)
        return span
    }

    /// Serves the part of chunk `index` that `span` covers when it is a zero chunk or in memory,
    /// and returns whether it did; false (nothing appended) when it must be waited for.
    func servePieceNow<Sink: ReadSink>(_ index: Int, of span: ReadSpan, into sink: inout Sink) -> Bool {
        let (lower, upper) = span.bounds(of: index, chunkSize: chunkSize)
        let pieceStarted = ContinuousClock.now
        guard let ref = manifest.chunks[index] else {
            if let recorder, recorder.includingZeroChunks { recorder.touch(index) }
            counters.withLock { $0.chunksFromZero += 1 }
            sink.appendZeros(upper - lower)
            metrics.served(.zero, bytes: upper - lower, since: pieceStarted)
            return true
        }
        recorder?.touch(index)
        // The fast path only takes what is in memory now; anything else goes the async way,
        // which counts its first use itself.
        guard let ciphertext = ciphertextInMemory(of: index, ref) else { return false }
        noteFirstUse(of: index)
        sink.append(count: upper - lower) { ChunkSealer.decrypt(ciphertext, range: lower..<upper, key: ref.key, into: $0) }
        metrics.served(.memory, bytes: upper - lower, since: pieceStarted)
        return true
    }
}

/// A memory manifest's chunks kept as deltas (its `PatchTable`) and, when they name base pages,
/// the image of the base snapshot's RAM those are read from.
public struct ChunkPatches: Sendable {
    public let table: PatchTable
    public let base: LazyImage?

    public init(table: PatchTable, base: LazyImage?) {
        self.table = table
        self.base = base
    }
}
