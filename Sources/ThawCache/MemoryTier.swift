public import ThawSeal

/// The memory half of the L1 cache: verified ciphertext by chunk name, at most `capacity`
/// bytes, evicted by a policy.
///
/// A value type with no lock: `L1Cache` keeps it behind a mutex, and a test can drive it
/// directly. Byte arrays are shared, not copied, with the callers that read them.
public struct MemoryTier: Sendable {
    public let capacity: Int
    private var chunks: [CacheKey: [UInt8]] = [:]
    private var policy: ChunkPolicy
    private var counters = TierStatistics()

    /// - Parameters:
    ///   - capacity: the most bytes of ciphertext held at once.
    ///   - policy: how the tier chooses what to evict.
    public init(capacity: Int, policy: EvictionPolicyChoice = .default) {
        precondition(capacity >= 0, "a memory tier needs a capacity >= 0, not \(capacity)")
        self.capacity = capacity
        self.policy = ChunkPolicy(policy)
        counters.capacity = capacity
    }

    public var bytes: Int { policy.bytes }
    public var count: Int { chunks.count }

    public func contains(_ name: ChunkName) -> Bool { chunks[CacheKey(name)] != nil }

    /// The chunk's ciphertext, counted as a hit or a miss.
    public mutating func get(_ name: ChunkName) -> [UInt8]? {
        let key = CacheKey(name)
        guard let bytes = chunks[key] else {
            counters.misses += 1
            return nil
        }
        counters.hits += 1
        counters.hitBytes += UInt64(bytes.count)
        policy.recordAccess(key)
        return bytes
    }

    /// Holds `ciphertext`, which the caller has checked against `name`, evicting what the
    /// policy chooses until it fits. A chunk already held counts as a reference; a chunk larger
    /// than the whole tier is not held.
    ///
    /// - Returns: the names evicted to make room.
    @discardableResult
    public mutating func put(_ name: ChunkName, _ ciphertext: [UInt8]) -> [ChunkName] {
        let key = CacheKey(name)
        if chunks[key] != nil {
            policy.recordAccess(key)
            return []
        }
        guard ciphertext.count <= capacity else { return [] }
        var evicted: [ChunkName] = []
        while policy.bytes + ciphertext.count > capacity, let victim = policy.evict() {
            chunks[victim.key] = nil
            evicted.append(victim.key.name)
        }
        counters.evictions += UInt64(evicted.count)
        policy.insert(key, size: ciphertext.count)
        chunks[key] = ciphertext
        counters.insertions += 1
        return evicted
    }

    /// Drops a chunk, if held; not counted as an eviction.
    public mutating func remove(_ name: ChunkName) {
        let key = CacheKey(name)
        if chunks.removeValue(forKey: key) != nil { policy.remove(key) }
    }

    public var statistics: TierStatistics {
        var snapshot = counters
        snapshot.bytes = policy.bytes
        snapshot.entries = chunks.count
        return snapshot
    }
}
