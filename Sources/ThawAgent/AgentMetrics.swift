public import Prometheus
import Synchronization
public import ThawCache
public import ThawL2
public import ThawServe

/// The agent's Prometheus registry: the serving figures every image reports as it reads
/// (`ServeMetrics` through swift-metrics, L2 lookups and their latency included), and the L1 and
/// L2 caches' own figures, copied from their counters just before each scrape.
public final class AgentMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    public let serve: ServeMetrics

    private let tierBytes: [L1Tier: Gauge]
    private let tierCapacity: [L1Tier: Gauge]
    private let tierEntries: [L1Tier: Gauge]
    private let tierHits: [L1Tier: Counter]
    private let tierMisses: [L1Tier: Counter]
    private let tierEvictions: [L1Tier: Counter]
    private let corruptFiles: Counter
    private let l2ShardsMissingOrLate: Counter
    private let l2BadChunks: Counter
    private let l2ChunksStored: Counter
    private let l2ShardWriteFailures: Counter
    private let l2WriteBacksDropped: Counter
    private let imagesServed: Gauge
    /// The cache counters at the previous scrape: Prometheus counters only go up, so each
    /// scrape adds the difference.
    private let previous = Mutex<L1Statistics?>(nil)
    private let previousL2 = Mutex<L2Statistics?>(nil)

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        var factory = PrometheusMetricsFactory(registry: registry)
        // Chunk reads take microseconds from memory and up to seconds from a remote origin.
        let latencyBuckets: [Duration] = [
            .microseconds(10), .microseconds(50), .microseconds(100), .microseconds(500),
            .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
            .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(5),
        ]
        factory.defaultDurationHistogramBuckets = latencyBuckets
        serve = ServeMetrics(factory: factory)
        func perTier<T>(_ make: (L1Tier) -> T) -> [L1Tier: T] {
            Dictionary(uniqueKeysWithValues: L1Tier.allCases.map { ($0, make($0)) })
        }
        tierBytes = perTier { registry.makeGauge(name: "thaw_l1_bytes", labels: [("tier", $0.rawValue)]) }
        tierCapacity = perTier { registry.makeGauge(name: "thaw_l1_capacity_bytes", labels: [("tier", $0.rawValue)]) }
        tierEntries = perTier { registry.makeGauge(name: "thaw_l1_chunks", labels: [("tier", $0.rawValue)]) }
        tierHits = perTier { registry.makeCounter(name: "thaw_l1_hits_total", labels: [("tier", $0.rawValue)]) }
        tierMisses = perTier { registry.makeCounter(name: "thaw_l1_misses_total", labels: [("tier", $0.rawValue)]) }
        tierEvictions = perTier { registry.makeCounter(name: "thaw_l1_evictions_total", labels: [("tier", $0.rawValue)]) }
        corruptFiles = registry.makeCounter(name: "thaw_l1_corrupt_files_dropped_total")
        imagesServed = registry.makeGauge(name: "thaw_images_served")
        l2ShardsMissingOrLate = registry.makeCounter(name: "thaw_l2_shards_missing_or_late_total")
        l2BadChunks = registry.makeCounter(name: "thaw_l2_bad_chunks_total")
        l2ChunksStored = registry.makeCounter(name: "thaw_l2_chunks_stored_total")
        l2ShardWriteFailures = registry.makeCounter(name: "thaw_l2_shard_write_failures_total")
        l2WriteBacksDropped = registry.makeCounter(name: "thaw_l2_write_backs_dropped_total")
    }

    /// Copies the caches' figures in, then renders every metric in Prometheus' text format.
    public func scrape(cache: L1Cache, l2: L2Statistics? = nil, imagesServed count: Int) -> [UInt8] {
        if let l2 {
            previousL2.withLock { previous in
                let before = previous ?? L2Statistics()
                l2ShardsMissingOrLate.increment(by: Int64(l2.shardsMissingOrLate - before.shardsMissingOrLate))
                l2BadChunks.increment(by: Int64(l2.badChunks - before.badChunks))
                l2ChunksStored.increment(by: Int64(l2.chunksStored - before.chunksStored))
                l2ShardWriteFailures.increment(by: Int64(l2.shardWriteFailures - before.shardWriteFailures))
                l2WriteBacksDropped.increment(by: Int64(l2.writeBacksDropped - before.writeBacksDropped))
                previous = l2
            }
        }
        let now = cache.statistics
        previous.withLock { previous in
            for tier in L1Tier.allCases {
                guard let current = now[tier] else { continue }
                let before = previous?[tier] ?? TierStatistics()
                tierBytes[tier]?.set(Int64(current.bytes))
                tierCapacity[tier]?.set(Int64(current.capacity))
                tierEntries[tier]?.set(Int64(current.entries))
                tierHits[tier]?.increment(by: Int64(current.hits - before.hits))
                tierMisses[tier]?.increment(by: Int64(current.misses - before.misses))
                tierEvictions[tier]?.increment(by: Int64(current.evictions - before.evictions))
            }
            corruptFiles.increment(by: Int64(now.corruptFilesDropped - (previous?.corruptFilesDropped ?? 0)))
            previous = now
        }
        imagesServed.set(Int64(count))
        return registry.emitToBuffer()
    }
}

extension L1Statistics {
    subscript(tier: L1Tier) -> TierStatistics? {
        switch tier {
        case .memory: memory
        case .disk: disk
        }
    }
}
