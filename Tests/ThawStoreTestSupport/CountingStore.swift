public import Synchronization
public import ThawSeal
public import ThawStore

/// A directory store that counts its reads, per key, and its listings: what tests of the
/// stores layered on others (early reads, manifest lookup) check they asked for.
public final class CountingStore: ChunkStore {
    public let base: DirectoryStore
    private let counts = Mutex<(reads: [StoreKey: Int], listings: Int)>(([:], 0))

    public init(_ base: DirectoryStore) { self.base = base }

    /// Reads of `key` so far.
    public func reads(of key: StoreKey) -> Int { counts.withLock { $0.reads[key] ?? 0 } }
    /// Listings so far.
    public var listings: Int { counts.withLock { $0.listings } }

    public var location: String { base.location }
    public func get(_ key: StoreKey) async throws -> [UInt8] {
        counts.withLock { $0.reads[key, default: 0] += 1 }
        return try await base.get(key)
    }
    public func exists(_ key: StoreKey) async throws -> Bool { try await base.exists(key) }
    public func put(_ key: StoreKey, _ bytes: [UInt8]) async throws { try await base.put(key, bytes) }
    public func delete(_ key: StoreKey) async throws { try await base.delete(key) }
    public func list(under prefix: String) -> AsyncThrowingStream<StoreKey, any Error> {
        counts.withLock { $0.listings += 1 }
        return base.list(under: prefix)
    }
    public func putChunk(_ name: ChunkName, _ ciphertext: [UInt8], root: RootID) async throws {
        try await base.putChunk(name, ciphertext, root: root)
    }
    public func sync() async throws { try await base.sync() }
    public func deleteAll(under prefix: String) async throws -> Int { try await base.deleteAll(under: prefix) }
}
