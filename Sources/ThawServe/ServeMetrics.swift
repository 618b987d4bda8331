public import CoreMetrics

/// Where a piece of a read came from.
public enum ServeTier: String, Sendable, Hashable, CaseIterable {
    /// An all-zero chunk, answered without any fetch.
    case zero
    /// L1's memory tier, or the holding area of an image served without L1.
    case memory
    /// L1's disk tier.
    case disk
    /// The shared L2 cache (the reader waited for a fetch that L2 answered).
    case l2
    /// The origin store (the reader waited for a fetch, its own or one it joined).
    case origin
}

/// Why the origin was asked for a chunk.
public enum OriginFetchKind: String, Sendable, Hashable, CaseIterable {
    /// A reader is waiting for it.
    case demand
    /// A sequential stream will probably read it next.
    case readAhead = "read_ahead"
    /// The access record of an earlier start lists it.
    case prefetch
}

/// The serving figures, through swift-metrics so whichever backend the process bootstraps (the
/// agent uses swift-prometheus) receives them. One instance is shared by every image an agent
/// serves: the dimensions are tiers and kinds, never manifests, so the number of series stays fixed.
public struct ServeMetrics: Sendable {
    let reads: Counter
    let readBytes: Counter
    let readDuration: Timer
    let tierPieces: [ServeTier: Counter]
    let tierBytes: [ServeTier: Counter]
    let tierDuration: [ServeTier: Timer]
    let originFetches: [OriginFetchKind: Counter]
    let originFetchesInFlight: Meter
    let prefetchHits: Counter
    let l2Hits: Counter
    let l2Misses: Counter
    let l2LookupDuration: Timer
    let fetchErrors: Counter
    let deadlineExpiries: Counter
    let readErrors: Counter

    /// Metric names, for the Prometheus endpoint and its documentation.
    public enum Name {
        public static let reads = "thaw_reads_total"
        public static let readBytes = "thaw_read_bytes_total"
        public static let readDuration = "thaw_read_duration_seconds"
        public static let tierPieces = "thaw_tier_reads_total"
        public static let tierBytes = "thaw_tier_read_bytes_total"
        public static let tierDuration = "thaw_tier_read_duration_seconds"
        public static let originFetches = "thaw_origin_fetches_total"
        public static let originFetchesInFlight = "thaw_origin_fetches_in_flight"
        public static let prefetchHits = "thaw_prefetch_hits_total"
        public static let l2Lookups = "thaw_l2_lookups_total"
        public static let l2LookupDuration = "thaw_l2_lookup_duration_seconds"
        public static let errors = "thaw_errors_total"
    }

    /// - Parameter factory: where the metrics go; the default is the process's bootstrapped
    ///   backend (a no-op until one is bootstrapped).
    public init(factory: any MetricsFactory = MetricsSystem.factory) {
        reads = Counter(label: Name.reads, factory: factory)
        readBytes = Counter(label: Name.readBytes, factory: factory)
        readDuration = Timer(label: Name.readDuration, factory: factory)
        var pieces: [ServeTier: Counter] = [:]
        var bytes: [ServeTier: Counter] = [:]
        var durations: [ServeTier: Timer] = [:]
        for tier in ServeTier.allCases {
            pieces[tier] = Counter(label: Name.tierPieces, dimensions: [("tier", tier.rawValue)], factory: factory)
            bytes[tier] = Counter(label: Name.tierBytes, dimensions: [("tier", tier.rawValue)], factory: factory)
            durations[tier] = Timer(label: Name.tierDuration, dimensions: [("tier", tier.rawValue)], factory: factory)
        }
        tierPieces = pieces
        tierBytes = bytes
        tierDuration = durations
        var fetches: [OriginFetchKind: Counter] = [:]
        for kind in OriginFetchKind.allCases {
            fetches[kind] = Counter(label: Name.originFetches, dimensions: [("kind", kind.rawValue)], factory: factory)
        }
        originFetches = fetches
        originFetchesInFlight = Meter(label: Name.originFetchesInFlight, factory: factory)
        prefetchHits = Counter(label: Name.prefetchHits, factory: factory)
        l2Hits = Counter(label: Name.l2Lookups, dimensions: [("result", "hit")], factory: factory)
        l2Misses = Counter(label: Name.l2Lookups, dimensions: [("result", "miss")], factory: factory)
        l2LookupDuration = Timer(label: Name.l2LookupDuration, factory: factory)
        fetchErrors = Counter(label: Name.errors, dimensions: [("kind", "fetch")], factory: factory)
        deadlineExpiries = Counter(label: Name.errors, dimensions: [("kind", "deadline")], factory: factory)
        readErrors = Counter(label: Name.errors, dimensions: [("kind", "read")], factory: factory)
    }

    func served(_ tier: ServeTier, bytes: Int, since start: ContinuousClock.Instant) {
        tierPieces[tier]?.increment()
        tierBytes[tier]?.increment(by: bytes)
        tierDuration[tier]?.recordNanoseconds((ContinuousClock.now - start).nanoseconds)
    }
}

extension Duration {
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
