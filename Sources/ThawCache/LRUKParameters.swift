/// The settings of `LRUKPolicy`. Times are counted in references: the policy's clock advances
/// by one at every insertion and every reference to a resident key, so the policy needs no
/// wall clock and a test can say exactly when a period ends.
public struct LRUKParameters: Sendable, Hashable {
    /// How many of a key's references are remembered; the policy ranks keys by the time of the
    /// K-th most recent one. K = 2 tells a key used twice (likely to be used again) from a key
    /// used once (a scan, likely never again), which is what protects the hot set.
    public var k: Int

    /// References to one key that follow its previous reference within this many ticks are
    /// correlated: they count as one reference, and a key so referenced cannot be evicted
    /// until the period has passed. A block device reads a chunk in several requests in a row;
    /// without this, one pass over a chunk would look like K independent uses.
    public var correlatedReferencePeriod: UInt64

    /// How long the history of an evicted key is kept, in ticks, so a key that comes back soon
    /// keeps its earlier references instead of starting as a one-off again.
    public var retainedInformationPeriod: UInt64

    /// How many evicted keys' histories are kept at most, whatever their age; bounds the
    /// memory the policy uses beyond its resident keys. Zero keeps none.
    public var retainedLimit: Int

    /// The defaults: K = 2, as the cache's design asks. A correlated period of 32 references
    /// covers the few requests a block device makes for one chunk, with other readers'
    /// requests interleaved; `thaw-bench eviction` finds miss ratios almost the same from 4 to
    /// 128. Histories are retained for about a million references, for at most 65,536 keys
    /// (a few megabytes).
    public init(k: Int = 2, correlatedReferencePeriod: UInt64 = 32, retainedInformationPeriod: UInt64 = 1 << 20,
                retainedLimit: Int = 1 << 16) {
        precondition(k >= 1, "LRU-K needs K >= 1, not \(k)")
        precondition(retainedLimit >= 0, "the retained history limit cannot be negative (\(retainedLimit))")
        self.k = k
        self.correlatedReferencePeriod = correlatedReferencePeriod
        self.retainedInformationPeriod = retainedInformationPeriod
        self.retainedLimit = retainedLimit
    }
}
