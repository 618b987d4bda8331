/// First in, first out: the victim is the key inserted longest ago, however often it was used
/// since. O(1) per operation; a baseline for the benchmarks.
public struct FIFOPolicy<Key: Hashable & Sendable>: EvictionPolicy {
    @usableFromInline var queue = SlotQueue<Key>()

    @inlinable public init() {}

    @inlinable public var count: Int { queue.count }
    @inlinable public var bytes: Int { queue.bytes }
    @inlinable public func contains(_ key: Key) -> Bool { queue.contains(key) }
    @inlinable public mutating func insert(_ key: Key, size: Int) { queue.append(key, size: size) }
    @inlinable public mutating func recordAccess(_ key: Key) {}
    @inlinable @discardableResult
    public mutating func remove(_ key: Key) -> Int? { queue.remove(key) }
    @inlinable public func victim() -> Key? { queue.first }
    @inlinable public mutating func evict() -> (key: Key, size: Int)? { queue.removeFirst() }
}
