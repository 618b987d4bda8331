public import ThawSeal
import Synchronization

/// Another store that reads some objects before anyone asks for them, and hands each early
/// read's result to the first `get` of its key.
///
/// A start knows its manifest's key (from the metadata) well before its agent is ready to open
/// it: mounting FUSE, binding the NBD socket and opening the caches take tens of milliseconds,
/// and the origin's round trip for the manifest and the objects beside it can pass meanwhile
/// instead of after. Everything else goes straight to the base store.
public final class EarlyReadStore: ChunkStore {
    public let base: any ChunkStore
    private let reads = Mutex<[StoreKey: Task<[UInt8], any Error>]>([:])

    public init(_ base: any ChunkStore) {
        self.base = base
    }

    public var location: String { base.location }

    /// Starts reading `keys` now. A key already being read is not read twice.
    public func readEarly(_ keys: [StoreKey]) {
        reads.withLock { reads in
            for key in keys where reads[key] == nil {
                reads[key] = Task { [base] in try await base.get(key) }
            }
        }
    }

    /// Keys read early and not asked for yet.
    public var unclaimed: Set<StoreKey> { reads.withLock { Set($0.keys) } }

    /// The early read's result when `key` was read early (once: a later `get` reads again),
    /// else the base store's.
    /// The caller that claims an early read owns it: cancelling the caller cancels the read.
    public func get(_ key: StoreKey) async throws -> [UInt8] {
        if let early = reads.withLock({ $0.removeValue(forKey: key) }) {
            return try await withTaskCancellationHandler {
                try await early.value
            } onCancel: {
                early.cancel()
            }
        }
        return try await base.get(key)
    }

    /// Cancels the early reads nobody asked for (an agent stopping, a start given up).
    public func cancelUnclaimed() {
        let unclaimed = reads.withLock { reads in
            defer { reads = [:] }
            return Array(reads.values)
        }
        for read in unclaimed { read.cancel() }
    }

    public func exists(_ key: StoreKey) async throws -> Bool { try await base.exists(key) }
    public func put(_ key: StoreKey, _ bytes: [UInt8]) async throws {
        // A write replaces what an early read may have seen.
        drop { $0 == key }
        try await base.put(key, bytes)
    }
    public func delete(_ key: StoreKey) async throws {
        drop { $0 == key }
        try await base.delete(key)
    }
    public func list(under prefix: String) -> AsyncThrowingStream<StoreKey, any Error> { base.list(under: prefix) }
    public func putChunk(_ name: ChunkName, _ ciphertext: [UInt8], root: RootID) async throws {
        try await base.putChunk(name, ciphertext, root: root)
    }
    public func sync() async throws { try await base.sync() }
    public func deleteAll(under prefix: String) async throws -> Int {
        drop { $0.path.hasPrefix(prefix + "/") }
        return try await base.deleteAll(under: prefix)
    }

    /// Forgets, and cancels, the early reads of the keys `matching` picks.
    private func drop(_ matching: (StoreKey) -> Bool) {
        let dropped = reads.withLock { reads in
            let keys = reads.keys.filter(matching)
            return keys.compactMap { reads.removeValue(forKey: $0) }
        }
        for read in dropped { read.cancel() }
    }
}
