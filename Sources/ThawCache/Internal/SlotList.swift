/// A doubly linked list threaded through slot numbers: O(1) append, unlink and move to the
/// tail, which is all LRU and FIFO order need.
@usableFromInline
struct SlotList: Sendable {
    @usableFromInline var previous: [Int32] = []
    @usableFromInline var next: [Int32] = []
    @usableFromInline var head: Int32 = -1
    @usableFromInline var tail: Int32 = -1

    @inlinable init() {}

    @inlinable var first: Int32? { head >= 0 ? head : nil }

    /// Makes room for slots below `count`.
    @inlinable
    mutating func grow(to count: Int) {
        while previous.count < count {
            previous.append(-1)
            next.append(-1)
        }
    }

    @inlinable
    mutating func append(_ slot: Int32) {
        previous[Int(slot)] = tail
        next[Int(slot)] = -1
        if tail >= 0 { next[Int(tail)] = slot } else { head = slot }
        tail = slot
    }

    @inlinable
    mutating func remove(_ slot: Int32) {
        let before = previous[Int(slot)]
        let after = next[Int(slot)]
        if before >= 0 { next[Int(before)] = after } else { head = after }
        if after >= 0 { previous[Int(after)] = before } else { tail = before }
    }

    @inlinable
    mutating func moveToEnd(_ slot: Int32) {
        guard tail != slot else { return }
        remove(slot)
        append(slot)
    }
}
