/// The deduplicated instances of every function on one agent: a function's microVM saved once
/// its handler has loaded, its memory folded into the shared snapshot store (equal chunks
/// stored once across every snapshot, compressed), so that it holds no memory on the worker
/// and is restored on demand.
///
/// One snapshot serves any number of restores at once, so a function has at most one. It is
/// kept while its function's invocations suggest another will come: the keep-dedup period,
/// from the same arrival history as the warm keep-alive but its own `KeepAlivePolicy` (in
/// Medes, deduplicated sandboxes are kept for longer than warm ones, since they cost almost
/// nothing to keep). Past it, the snapshot is handed back, to delete; the function is cold.
///
/// Pure bookkeeping like `InstancePool`: taking, restoring and deleting snapshots is the
/// caller's.
public actor DeduplicatedInstances<Snapshot: Sendable> {
    struct Entry {
        var snapshot: Snapshot
        var code: String
        var lastUsed: Double
        /// Bytes its memory added to the store (chunks no other snapshot had).
        var storedBytes: UInt64
    }

    /// What is kept now.
    public struct Census: Sendable, Equatable {
        public var snapshots: Int
        public var storedBytes: UInt64
        public var taking: Int
    }

    nonisolated public let policy: KeepAlivePolicy
    let clock: @Sendable () -> Double
    var entries: [String: Entry] = [:]
    /// Functions whose snapshot is being taken, with the code it is of.
    var taking: [String: String] = [:]
    var closed = false

    public init(policy: KeepAlivePolicy, clock: @escaping @Sendable () -> Double) {
        self.policy = policy
        self.clock = clock
    }

    /// The snapshot of `function`'s `code` (nil: any code), if one is kept; using it restarts
    /// its keep-dedup.
    public func snapshot(of function: String, code: String?) -> Snapshot? {
        guard var entry = entries[function], code == nil || entry.code == code else { return nil }
        entry.lastUsed = clock()
        entries[function] = entry
        return entry.snapshot
    }

    /// Whether the caller should take a snapshot of `function`'s `code` now: none is kept or
    /// under way for it. A true answer must be followed by `finishTaking`.
    public func beginTaking(_ function: String, code: String) -> Bool {
        guard !closed, entries[function]?.code != code, taking[function] == nil else { return false }
        taking[function] = code
        return true
    }

    /// The snapshot `beginTaking` allowed (nil when taking it failed). What it replaces comes
    /// back, to delete; so does `snapshot` itself when its code is no longer the function's
    /// (`drain` came meanwhile) or after `close`.
    public func finishTaking(_ function: String, code: String, snapshot: Snapshot?, storedBytes: UInt64) -> [Snapshot] {
        let current = taking.removeValue(forKey: function)
        guard let snapshot else { return [] }
        guard !closed, current == code else { return [snapshot] }
        let replaced = entries[function].map { [$0.snapshot] } ?? []
        entries[function] = Entry(snapshot: snapshot, code: code, lastUsed: clock(), storedBytes: storedBytes)
        return replaced
    }

    /// Snapshots unused for longer than their function's keep-dedup, with their functions,
    /// taken out to delete. `histories` are the functions' arrivals (`InstancePool.histories`);
    /// the snapshots of functions in `keeping` (which still have warm instances restored from
    /// them) count as used now, so a function goes from warm to deduplicated to cold in order.
    public func expire(histories: [String: ArrivalHistory], keeping: Set<String> = []) -> [(function: String, snapshot: Snapshot)] {
        let now = clock()
        for function in keeping where entries[function] != nil { entries[function]?.lastUsed = now }
        var expired: [(function: String, snapshot: Snapshot)] = []
        for (function, entry) in entries where now - entry.lastUsed >= keepDedup(histories[function] ?? ArrivalHistory()) {
            expired.append((function, entry.snapshot))
            entries[function] = nil
        }
        return expired
    }

    /// `function`'s snapshot (its code changed, or it was deleted), to delete; a snapshot
    /// under way for it is handed back when it finishes.
    public func drain(_ function: String) -> [Snapshot] {
        taking[function] = taking[function].map { _ in "" }
        return entries.removeValue(forKey: function).map { [$0.snapshot] } ?? []
    }

    /// Stops keeping anything and returns the functions that had a snapshot; the snapshots
    /// stay in the store, for the next start of an agent.
    public func close() -> [String] {
        closed = true
        defer { entries = [:] }
        return Array(entries.keys)
    }

    /// The keep-dedup period, in seconds, for a function with `history`.
    public func keepDedup(_ history: ArrivalHistory) -> Double { policy.keepAlive(for: history) }

    public var census: Census {
        Census(snapshots: entries.count, storedBytes: entries.values.reduce(0) { $0 + $1.storedBytes }, taking: taking.count)
    }
}
