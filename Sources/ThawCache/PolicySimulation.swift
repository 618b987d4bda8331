/// Replays a trace of references through a policy as a cache bounded in bytes would, counting
/// hits, misses and evictions. No objects are stored: this measures a policy, for tests and for
/// `thaw-bench eviction`.
public struct PolicySimulation<Policy: EvictionPolicy>: Sendable {
    public let capacity: Int
    @usableFromInline var state: Policy
    @usableFromInline var counts = (hits: 0, misses: 0, evictions: 0)

    @inlinable
    public init(policy: Policy, capacity: Int) {
        state = policy
        self.capacity = capacity
    }

    @inlinable public var policy: Policy { state }
    @inlinable public var hits: Int { counts.hits }
    @inlinable public var misses: Int { counts.misses }
    @inlinable public var evictions: Int { counts.evictions }

    /// The share of references that missed, from 0 to 1.
    public var missRatio: Double { hits + misses == 0 ? 0 : Double(misses) / Double(hits + misses) }

    /// One reference to `key`, an object of `size` bytes. Returns whether it hit.
    @inlinable @discardableResult
    public mutating func reference(_ key: Policy.Key, size: Int) -> Bool {
        if state.contains(key) {
            counts.hits += 1
            state.recordAccess(key)
            return true
        }
        counts.misses += 1
        guard size <= capacity else { return false }
        while state.bytes + size > capacity, state.evict() != nil { counts.evictions += 1 }
        state.insert(key, size: size)
        return false
    }
}
