/// Counters of one cache tier, read as a snapshot. Counts only grow; `bytes` and `entries`
/// are what the tier holds at the moment of the snapshot.
public struct TierStatistics: Sendable, Hashable, Codable {
    /// Lookups answered by this tier.
    public var hits: UInt64 = 0
    /// Lookups this tier could not answer, corrupt copies included.
    public var misses: UInt64 = 0
    /// Bytes returned by hits.
    public var hitBytes: UInt64 = 0
    /// Chunks admitted.
    public var insertions: UInt64 = 0
    /// Chunks the policy gave up to make room.
    public var evictions: UInt64 = 0
    /// Bytes held now.
    public var bytes: Int = 0
    /// Chunks held now.
    public var entries: Int = 0
    /// The bound on `bytes`.
    public var capacity: Int = 0

    public init() {}
}
