public import DequeModule

/// LRU-K replacement, after O'Neil, O'Neil and Weikum, "The LRU-K Page Replacement Algorithm
/// for Database Disk Buffering" (SIGMOD 1993).
///
/// Each key keeps the times of its last K uncorrelated references. The victim is the key whose
/// K-th most recent reference is oldest (the largest backward K-distance). A key with fewer than
/// K references has an infinite distance and goes first, the least recently used of those
/// first. So a scan of one-off chunks evicts other one-off chunks and leaves alone the chunks
/// that were used twice, which plain LRU would flush.
///
/// - Correlated references: a reference that follows the key's previous one within
///   `correlatedReferencePeriod` ticks updates only the time of last use. When the next
///   uncorrelated reference comes, the burst is counted as one reference made at its end, so
///   the gaps between bursts, not their length, set the key's rank. A key within its period
///   is not chosen as a victim while any other key can be.
/// - Retained information: an evicted key's history is kept for `retainedInformationPeriod`
///   ticks (at most `retainedLimit` keys); if the key is inserted again in that time, it
///   resumes that history.
///
/// Costs: a reference or an insertion is O(log n) (keys with K references sit in a heap
/// ordered by their K-th reference, the others in a list in order of last use); choosing a
/// victim is O(1), plus a bounded walk of the heap when its first keys are within their
/// correlated period. Per-key state lives in flat arrays indexed by slot, retained histories
/// too, so steady-state operation allocates nothing.
public struct LRUKPolicy<Key: Hashable & Sendable>: EvictionPolicy {
    public let parameters: LRUKParameters

    @usableFromInline var now: UInt64 = 0
    @usableFromInline var table = SlotTable<Key>()
    /// The time of each slot's most recent reference, correlated or not.
    @usableFromInline var lastUse: [UInt64] = []
    /// K times per slot, most recent first: the starts of the key's last K uncorrelated
    /// references, 0 where the key has fewer.
    @usableFromInline var history: [UInt64] = []
    /// Keys with fewer than K references, least recently used first.
    @usableFromInline var young = SlotList()
    /// Keys with K references, oldest K-th reference first.
    @usableFromInline var old = SlotHeap()
    /// Evicted keys whose history is kept, with the same layout as the resident ones.
    @usableFromInline var retained = SlotTable<Key>()
    @usableFromInline var retainedHistory: [UInt64] = []
    @usableFromInline var retainedLastUse: [UInt64] = []
    @usableFromInline var retainedAt: [UInt64] = []
    /// Evictions in order, to forget the oldest histories first; stamps of keys that came
    /// back since are skipped.
    @usableFromInline var retainedOrder: Deque<RetainedStamp> = []

    @usableFromInline
    struct RetainedStamp: Sendable {
        @usableFromInline var key: Key
        @usableFromInline var evictedAt: UInt64

        @inlinable
        init(key: Key, evictedAt: UInt64) {
            self.key = key
            self.evictedAt = evictedAt
        }
    }

    /// How far past keys within their correlated period a victim search looks; beyond that
    /// the policy takes the best-ranked key even if it was just used.
    @inlinable static var eligibilitySearchLimit: Int { 64 }

    @inlinable
    public init(_ parameters: LRUKParameters = LRUKParameters()) {
        precondition(parameters.k >= 1, "LRU-K needs K >= 1, not \(parameters.k)")
        self.parameters = parameters
    }

    /// The logical time: the number of insertions and references recorded so far.
    @inlinable public var clock: UInt64 { now }
    @inlinable public var count: Int { table.count }
    @inlinable public var bytes: Int { table.bytes }
    /// How many evicted keys' histories are held.
    @inlinable public var retainedCount: Int { retained.count }

    @inlinable public func contains(_ key: Key) -> Bool { table.slot(of: key) != nil }

    /// The times of `key`'s last K uncorrelated references, most recent first (0 where it has
    /// fewer), or nil when it is not resident.
    public func history(of key: Key) -> [UInt64]? {
        guard let slot = table.slot(of: key) else { return nil }
        let base = Int(slot) * parameters.k
        return Array(history[base..<base + parameters.k])
    }

    @inlinable
    public mutating func insert(_ key: Key, size: Int) {
        precondition(!contains(key), "\(key) is already resident")
        now += 1
        let k = parameters.k
        let slot = table.allocate(key, size: size)
        grow()
        let base = Int(slot) * k
        if let kept = retained.slot(of: key) {
            let keptBase = Int(kept) * k
            if now - retainedAt[Int(kept)] <= parameters.retainedInformationPeriod {
                for i in 0..<k { history[base + i] = retainedHistory[keptBase + i] }
                lastUse[Int(slot)] = retainedLastUse[Int(kept)]
                retained.release(kept)
                reference(slot)
                place(slot)
                pruneRetained()
                return
            }
            retained.release(kept)
        }
        for i in 0..<k { history[base + i] = 0 }
        history[base] = now
        lastUse[Int(slot)] = now
        place(slot)
        pruneRetained()
    }

    @inlinable
    public mutating func recordAccess(_ key: Key) {
        guard let slot = table.slot(of: key) else { return }
        now += 1
        let wasComplete = isComplete(slot)
        reference(slot)
        if wasComplete {
            old.update(slot, order(of: slot))
        } else if isComplete(slot) {
            young.remove(slot)
            old.insert(slot, order(of: slot))
        } else {
            young.moveToEnd(slot)
        }
    }

    @inlinable @discardableResult
    public mutating func remove(_ key: Key) -> Int? {
        guard let slot = table.slot(of: key) else { return nil }
        return release(slot)
    }

    /// The victim for the next admission, judged at the time of the reference that needs the
    /// room (one tick from now).
    @inlinable
    public func victim() -> Key? {
        victimSlot().map { table.key(at: $0) }
    }

    @inlinable
    public mutating func evict() -> (key: Key, size: Int)? {
        guard let slot = victimSlot() else { return nil }
        let key = table.key(at: slot)
        return (key, release(slot))
    }

    // MARK: Internals

    @inlinable
    func victimSlot() -> Int32? {
        let period = parameters.correlatedReferencePeriod
        let next = now + 1
        let eligible = { (slot: Int32) in next - lastUse[Int(slot)] > period }
        // The list is in order of last use: if its head is within its period, all of it is.
        if let head = young.first, eligible(head) { return head }
        if let slot = old.first(limit: Self.eligibilitySearchLimit, where: eligible) { return slot }
        // Everything is within its correlated period (a cache smaller than one burst of
        // references): give up the key that would have been chosen without the period.
        return young.first ?? old.minimum
    }

    /// Takes a slot out of the cache, keeping its history; returns its size.
    @inlinable
    mutating func release(_ slot: Int32) -> Int {
        if old.contains(slot) { old.remove(slot) } else { young.remove(slot) }
        let (key, size) = table.release(slot)
        if parameters.retainedLimit > 0 {
            let k = parameters.k
            let kept = retained.allocate(key, size: 0)
            while retainedAt.count < retained.slotCount {
                retainedAt.append(0)
                retainedLastUse.append(0)
                retainedHistory.append(contentsOf: repeatElement(0, count: k))
            }
            let base = Int(slot) * k
            let keptBase = Int(kept) * k
            for i in 0..<k { retainedHistory[keptBase + i] = history[base + i] }
            retainedLastUse[Int(kept)] = lastUse[Int(slot)]
            retainedAt[Int(kept)] = now
            retainedOrder.append(RetainedStamp(key: key, evictedAt: now))
        }
        pruneRetained()
        return size
    }

    /// Whether the slot has K uncorrelated references.
    @inlinable
    func isComplete(_ slot: Int32) -> Bool {
        history[Int(slot) * parameters.k + parameters.k - 1] != 0
    }

    @inlinable
    func order(of slot: Int32) -> SlotHeap.Order {
        SlotHeap.Order(rank: history[Int(slot) * parameters.k + parameters.k - 1], tieBreak: lastUse[Int(slot)])
    }

    /// Puts a slot with a fresh history in the list or the heap.
    @inlinable
    mutating func place(_ slot: Int32) {
        if isComplete(slot) { old.insert(slot, order(of: slot)) } else { young.append(slot) }
    }

    /// Records a reference at the current time in the slot's history.
    @inlinable
    mutating func reference(_ slot: Int32) {
        let k = parameters.k
        let base = Int(slot) * k
        let previousUse = lastUse[Int(slot)]
        lastUse[Int(slot)] = now
        guard now - previousUse > parameters.correlatedReferencePeriod else { return }
        // A new uncorrelated reference. The previous burst ran from history[base] to
        // previousUse; moving the older times forward by its length counts it as one
        // reference made at its end.
        let burst = previousUse - history[base]
        var i = k - 1
        while i > 0 {
            let earlier = history[base + i - 1]
            history[base + i] = earlier == 0 ? 0 : earlier + burst
            i -= 1
        }
        history[base] = now
    }

    @inlinable
    mutating func grow() {
        let slots = table.slotCount
        while lastUse.count < slots {
            lastUse.append(0)
            history.append(contentsOf: repeatElement(0, count: parameters.k))
        }
        young.grow(to: slots)
        old.grow(to: slots)
    }

    /// Drops retained histories that are too old or too many, oldest first.
    @inlinable
    mutating func pruneRetained() {
        while let front = retainedOrder.first,
              retained.count > parameters.retainedLimit || now - front.evictedAt > parameters.retainedInformationPeriod {
            retainedOrder.removeFirst()
            // The stamp is stale if the key came back, or was evicted again later.
            if let kept = retained.slot(of: front.key), retainedAt[Int(kept)] == front.evictedAt {
                retained.release(kept)
            }
        }
        // Stamps of keys that came back wait behind live ones; do not let them pile up.
        if retainedOrder.count > 2 * retained.count + 1024 {
            retainedOrder = Deque(retainedOrder.filter { stamp in
                retained.slot(of: stamp.key).map { retainedAt[Int($0)] == stamp.evictedAt } ?? false
            })
        }
    }
}
