/// Decides which key a bounded cache gives up when it needs room.
///
/// A policy only orders keys: it holds each resident key with its size in bytes and sees every
/// reference to it, but never the cached bytes. Policies are value types with no wall clock,
/// lock or I/O (LRU-K counts time in references), so the same trace always gives the same
/// evictions; the tiers that own a policy serialise access to it.
///
/// A cache drives a policy like this: on a hit, `recordAccess`; on a miss, `evict` until the new
/// object fits, then `insert`. `insert` counts as the first reference of the key.
public protocol EvictionPolicy<Key>: Sendable {
    associatedtype Key: Hashable & Sendable

    /// How many keys are resident.
    var count: Int { get }
    /// The sum of the sizes of the resident keys.
    var bytes: Int { get }

    func contains(_ key: Key) -> Bool

    /// Admits `key`, which is not resident, as referenced now.
    mutating func insert(_ key: Key, size: Int)

    /// Records a reference to a resident key; does nothing for a key that is not resident.
    mutating func recordAccess(_ key: Key)

    /// Removes a resident key at the cache's request (the object is gone for another reason
    /// than eviction). Returns its size, or nil when it was not resident.
    @discardableResult
    mutating func remove(_ key: Key) -> Int?

    /// The key `evict` would remove now, or nil when nothing is resident.
    func victim() -> Key?

    /// Removes the key the policy values least and returns it with its size.
    mutating func evict() -> (key: Key, size: Int)?
}

extension EvictionPolicy {
    @inlinable
    public mutating func evict() -> (key: Key, size: Int)? {
        guard let key = victim(), let size = remove(key) else { return nil }
        return (key, size)
    }
}
