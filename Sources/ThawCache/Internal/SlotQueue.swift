/// Resident keys in one order, first to be evicted first: the shared state of `LRUPolicy`
/// (which moves a key to the end when it is used) and `FIFOPolicy` (which does not).
@usableFromInline
struct SlotQueue<Key: Hashable & Sendable>: Sendable {
    @usableFromInline var table = SlotTable<Key>()
    @usableFromInline var order = SlotList()

    @inlinable init() {}

    @inlinable var count: Int { table.count }
    @inlinable var bytes: Int { table.bytes }
    @inlinable var first: Key? { order.first.map { table.key(at: $0) } }

    @inlinable func contains(_ key: Key) -> Bool { table.slot(of: key) != nil }

    @inlinable
    mutating func append(_ key: Key, size: Int) {
        precondition(!contains(key), "\(key) is already resident")
        let slot = table.allocate(key, size: size)
        order.grow(to: table.slotCount)
        order.append(slot)
    }

    @inlinable
    mutating func moveToEnd(_ key: Key) {
        if let slot = table.slot(of: key) { order.moveToEnd(slot) }
    }

    @inlinable
    mutating func remove(_ key: Key) -> Int? {
        guard let slot = table.slot(of: key) else { return nil }
        order.remove(slot)
        return table.release(slot).size
    }

    /// Removes the first key.
    @inlinable
    mutating func removeFirst() -> (key: Key, size: Int)? {
        guard let slot = order.first else { return nil }
        order.remove(slot)
        return table.release(slot)
    }
}
