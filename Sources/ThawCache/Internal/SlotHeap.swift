/// A binary min-heap of slots ordered by a rank and then a tie-breaker, that knows where each
/// slot sits, so a slot's rank can change or the slot can leave in O(log n).
///
/// LRU-K keeps its keys with K known references here, ranked by the time of the K-th most
/// recent reference; an eviction takes the minimum without scanning every key.
@usableFromInline
struct SlotHeap: Sendable {
    @usableFromInline
    struct Order: Sendable {
        @usableFromInline var rank: UInt64
        @usableFromInline var tieBreak: UInt64

        @inlinable
        init(rank: UInt64, tieBreak: UInt64) {
            self.rank = rank
            self.tieBreak = tieBreak
        }

        @inlinable
        func precedes(_ other: Order) -> Bool {
            rank != other.rank ? rank < other.rank : tieBreak < other.tieBreak
        }
    }

    @usableFromInline var items: [Int32] = []
    /// Where each slot sits in `items`, -1 when it is not in the heap.
    @usableFromInline var position: [Int32] = []
    @usableFromInline var order: [Order] = []

    @inlinable init() {}

    @inlinable var count: Int { items.count }
    @inlinable var minimum: Int32? { items.first }

    @inlinable
    mutating func grow(to count: Int) {
        while position.count < count {
            position.append(-1)
            order.append(Order(rank: 0, tieBreak: 0))
        }
    }

    @inlinable func contains(_ slot: Int32) -> Bool { position[Int(slot)] >= 0 }

    @inlinable
    mutating func insert(_ slot: Int32, _ newOrder: Order) {
        order[Int(slot)] = newOrder
        items.append(slot)
        position[Int(slot)] = Int32(items.count - 1)
        siftUp(items.count - 1)
    }

    @inlinable
    mutating func update(_ slot: Int32, _ newOrder: Order) {
        let old = order[Int(slot)]
        order[Int(slot)] = newOrder
        let at = Int(position[Int(slot)])
        if newOrder.precedes(old) { siftUp(at) } else { siftDown(at) }
    }

    @inlinable
    mutating func remove(_ slot: Int32) {
        let at = Int(position[Int(slot)])
        position[Int(slot)] = -1
        let moved = items.removeLast()
        guard at < items.count else { return }
        items[at] = moved
        position[Int(moved)] = Int32(at)
        siftUp(at)
        siftDown(Int(position[Int(moved)]))
    }

    /// The first slot in heap order for which `accept` holds, looking at no more than `limit`
    /// slots; nil when none of those qualifies.
    ///
    /// Walks the heap in order without disturbing it: a small frontier of heap positions
    /// whose parents were already visited, smallest first. Costs O(limit²) at worst, and
    /// callers pass a small limit; usually the minimum qualifies at once.
    @inlinable
    func first(limit: Int, where accept: (Int32) -> Bool) -> Int32? {
        guard let minimum else { return nil }
        if accept(minimum) { return minimum }
        var frontier = [1, 2].filter { $0 < items.count }
        var visited = 1
        while !frontier.isEmpty && visited < limit {
            var best = 0
            for candidate in frontier.indices.dropFirst() where less(frontier[candidate], frontier[best]) {
                best = candidate
            }
            let at = frontier.remove(at: best)
            visited += 1
            if accept(items[at]) { return items[at] }
            if 2 * at + 1 < items.count { frontier.append(2 * at + 1) }
            if 2 * at + 2 < items.count { frontier.append(2 * at + 2) }
        }
        return nil
    }

    @inlinable
    func less(_ a: Int, _ b: Int) -> Bool { order[Int(items[a])].precedes(order[Int(items[b])]) }

    @inlinable
    mutating func swapAt(_ a: Int, _ b: Int) {
        items.swapAt(a, b)
        position[Int(items[a])] = Int32(a)
        position[Int(items[b])] = Int32(b)
    }

    @inlinable
    mutating func siftUp(_ start: Int) {
        var at = start
        while at > 0 {
            let parent = (at - 1) / 2
            guard less(at, parent) else { return }
            swapAt(at, parent)
            at = parent
        }
    }

    @inlinable
    mutating func siftDown(_ start: Int) {
        var at = start
        while true {
            let left = 2 * at + 1
            guard left < items.count else { return }
            var smallest = left
            if left + 1 < items.count && less(left + 1, left) { smallest = left + 1 }
            guard less(smallest, at) else { return }
            swapAt(at, smallest)
            at = smallest
        }
    }
}
