/// Counters of a `LazyImage`, taken as one consistent snapshot.
public struct LazyImageStatistics: Sendable, Hashable, Codable {
    /// Calls to `read` that passed the range check.
    public var reads = 0
    public var bytesRead: UInt64 = 0
    /// Chunk pieces answered with zeros (all-zero chunks are not in the store).
    public var chunksFromZero = 0
    public var chunksFromL1 = 0
    /// Chunk pieces served from the in-memory holding area (only used when there is no L1).
    public var chunksFromMemory = 0
    /// Chunk pieces that waited for an origin fetch (their own or one they joined).
    public var chunksFromOrigin = 0
    /// Chunk pieces that waited for a fetch the L2 cache answered.
    public var chunksFromL2 = 0
    /// Chunks the L2 cache gave (each saved an origin fetch), and their ciphertext bytes.
    public var l2Hits = 0
    public var bytesFromL2: UInt64 = 0
    /// L2 lookups that found too few good shards, so the origin was asked.
    public var l2Misses = 0
    /// Chunk pieces of `chunksFromL1` that came from its disk tier.
    public var chunksFromDisk = 0
    /// `getChunk` calls made on the origin, by demand reads, read-ahead and prefetch.
    public var originFetches = 0
    /// Verified ciphertext bytes the origin returned.
    public var bytesFromOrigin: UInt64 = 0
    /// Demand reads that found a fetch of their chunk already in flight and waited for it.
    public var singleFlightJoins = 0
    /// Origin fetches started by read-ahead.
    public var readAheadFetches = 0
    /// Origin fetches started by the prefetch of an access record.
    public var prefetchFetches = 0
    /// Chunk reads that found their chunk fetched, or being fetched, by the prefetch.
    public var prefetchHits = 0
    /// Chunks of a prefetched access record read for the first time (however they were
    /// fetched: the record planned them), and fetches from L2 or the origin of chunks the record
    /// does not list. Together they say how much of a start the record foresaw.
    public var recordedChunksRead = 0
    public var fetchesOutsideRecord = 0
    /// Chunks rebuilt from a delta against a base snapshot (their deltas' bytes count in
    /// `bytesFromOrigin`, the base pages in the base image's figures).
    public var chunksRebuilt = 0
    /// Origin fetches that failed (missing, corrupt or unreachable chunks).
    public var fetchErrors = 0
    /// Reads that gave up on a chunk at the deadline.
    public var deadlineExpiries = 0

    public init() {}
}
