public import ThawCache
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

    public init(images: [Image], cache: L1Statistics) {
        self.images = images
        memory = cache.memory
        disk = cache.disk
        corruptFilesDropped = cache.corruptFilesDropped
    }

    init(served: [ServedImage], cache: L1Cache) {
        self.init(images: served.map { served in
            Image(id: served.id, size: served.size, reads: served.image.statistics,
                  prefetchChunks: served.prefetchRecord?.chunks.count, prefetchFinished: served.prefetchFinished,
                  recordedChunks: served.image.recorder?.count, recording: served.image.recorder?.isRecording ?? false)
        }, cache: cache.statistics)
    }
}
