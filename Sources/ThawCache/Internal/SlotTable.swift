/// Keys of a policy stored in numbered slots, so that the policy's per-key state can live in
/// flat arrays indexed by slot instead of in one heap object per key.
///
/// Slots of removed keys are reused, so the arrays grow to the largest number of keys held at
/// once and no further. Inlinable, like the policies built on it, so that a policy used from
/// another module is specialised for its key type there.
@usableFromInline
struct SlotTable<Key: Hashable & Sendable>: Sendable {
    @usableFromInline var index: [Key: Int32] = [:]
    @usableFromInline var keys: [Key?] = []
    @usableFromInline var sizes: [Int] = []
    @usableFromInline var free: [Int32] = []
    /// The sum of the sizes of the keys held.
    @usableFromInline var bytes = 0

    @inlinable init() {}

    @inlinable var count: Int { index.count }
    /// How many slots exist; parallel arrays of a policy must have this many elements.
    @inlinable var slotCount: Int { keys.count }

    @inlinable func slot(of key: Key) -> Int32? { index[key] }
    @inlinable func key(at slot: Int32) -> Key { keys[Int(slot)]! }
    @inlinable func size(at slot: Int32) -> Int { sizes[Int(slot)] }

    /// Gives `key` a slot. The caller has checked that the key is not held.
    @inlinable
    mutating func allocate(_ key: Key, size: Int) -> Int32 {
        precondition(size >= 0, "a cached object cannot have a negative size (\(size))")
        let slot: Int32
        if let reused = free.popLast() {
            slot = reused
            keys[Int(slot)] = key
            sizes[Int(slot)] = size
        } else {
            slot = Int32(keys.count)
            keys.append(key)
            sizes.append(size)
        }
        index[key] = slot
        bytes += size
        return slot
    }

    /// Frees `slot`; returns the key it held and its size.
    @inlinable @discardableResult
    mutating func release(_ slot: Int32) -> (key: Key, size: Int) {
        let key = keys[Int(slot)]!
        let size = sizes[Int(slot)]
        index[key] = nil
        keys[Int(slot)] = nil
        bytes -= size
        free.append(slot)
        return (key, size)
    }
}
