/// Least recently used: the victim is the key whose last reference is oldest. O(1) per
/// operation. Kept as the baseline LRU-K is measured against: one scan of new keys as large
/// as the cache flushes everything, hot or not.
public struct LRUPolicy<Key: Hashable & Sendable>: EvictionPolicy {
    @usableFromInline var queue = SlotQueue<Key>()

    @inlinable public init() {}

    @inlinable public var count: Int { queue.count }
    @inlinable public var bytes: Int { queue.bytes }
    @inlinable public func contains(_ key: Key) -> Bool { queue.contains(key) }
    @inlinable public mutating func insert(_ key: Key, size: Int) { queue.append(key, size: size) }
    @inlinable public mutating func recordAccess(_ key: Key) { queue.moveToEnd(key) }
    @inlinable @discardableResult
    public mutating func remove(_ key: Key) -> Int? { queue.remove(key) }
    @inlinable public func victim() -> Key? { queue.first }
    @inlinable public mutating func evict() -> (key: Key, size: Int)? { queue.removeFirst() }
}
