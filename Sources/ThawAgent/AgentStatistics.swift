public import ThawCache
public import ThawL2
public import ThawServe

/// What `thaw stats` shows: the figures of every image an agent serves and of its L1 cache,
/// as the control endpoint's `GET /v1/stats` returns them (JSON).
public struct AgentStatistics: Sendable, Codable, Equatable {
    public struct Image: Sendable, Codable, Equatable {
        public var id: String
        public var size: UInt64
        public var reads: LazyImageStatistics
        /// Chunks the access record being prefetched lists; nil without one.
        public var prefetchChunks: Int?
        public var prefetchFinished: Bool
        /// Chunks noted so far by this start's recording; nil when not recording.
        public var recordedChunks: Int?
        public var recording: Bool
    }

    public var images: [Image]
    public var memory: TierStatistics
    public var disk: TierStatistics?
    public var corruptFilesDropped: UInt64
    /// The L2 cache's figures; nil when the agent runs without L2.
    public var l2: L2Summary?

    /// What the L2 cache has done, with its lookup latency percentiles.
    public struct L2Summary: Sendable, Codable, Equatable {
        public var nodes: [String]
        public var dataShards: Int
        public var parityShards: Int
        public var hits: Int
        public var misses: Int
        public var bytesRead: UInt64
        public var chunksStored: Int
        public var shardWriteFailures: Int
        public var writeBacksDropped: Int
        public var shardsMissingOrLate: Int
        public var badChunks: Int
        public var latencyP50Microseconds: Int?
        public var latencyP99Microseconds: Int?

        public init(_ cache: L2Cache) {
            let s = cache.statistics
            nodes = cache.configuration.nodes.map { "\($0.host):\($0.port)" }
            dataShards = cache.configuration.dataShards
            parityShards = cache.configuration.parityShards
            hits = s.hits
            misses = s.misses
            bytesRead = s.bytesRead
            chunksStored = s.chunksStored
            shardWriteFailures = s.shardWriteFailures
            writeBacksDropped = s.writeBacksDropped
            shardsMissingOrLate = s.shardsMissingOrLate
            badChunks = s.badChunks
            latencyP50Microseconds = s.latencyPercentile(0.5)
            latencyP99Microseconds = s.latencyPercentile(0.99)
        }
    }

    public init(images: [Image], cache: L1Statistics, l2: L2Summary? = nil) {
        self.images = images
        memory = cache.memory
        disk = cache.disk
        corruptFilesDropped = cache.corruptFilesDropped
        self.l2 = l2
    }

    init(served: [ServedImage], cache: L1Cache, l2: L2Cache?) {
        self.init(images: served.map { served in
            Image(id: served.id, size: served.size, reads: served.image.statistics,
                  prefetchChunks: served.prefetchRecord?.chunks.count, prefetchFinished: served.prefetchFinished,
                  recordedChunks: served.image.recorder?.count, recording: served.image.recorder?.isRecording ?? false)
        }, cache: cache.statistics, l2: l2.map(L2Summary.init))
    }
}
