import Foundation
import Synchronization
import Testing
import ThawSeal
import ThawStore
import ThawTestSupport

/// A start's early reads: each is handed to the first `get` of its key, once; a write or a
/// delete through the store drops it; a missing object stays missing.
@Suite struct EarlyReadStoreTests {
    /// A directory store that counts the reads of each key.
    final class ReadCountingStore: ChunkStore {
        let base: DirectoryStore
        let reads = Mutex<[StoreKey: Int]>([:])

        init(_ base: DirectoryStore) { self.base = base }

        func count(_ key: StoreKey) -> Int { reads.withLock { $0[key] ?? 0 } }
        var location: String { base.location }
        func get(_ key: StoreKey) async throws -> [UInt8] {
            reads.withLock { $0[key, default: 0] += 1 }
            return try await base.get(key)
        }
        func exists(_ key: StoreKey) async throws -> Bool { try await base.exists(key) }
        func put(_ key: StoreKey, _ bytes: [UInt8]) async throws { try await base.put(key, bytes) }
        func delete(_ key: StoreKey) async throws { try await base.delete(key) }
        func list(under prefix: String) -> AsyncThrowingStream<StoreKey, any Error> { base.list(under: prefix) }
        func putChunk(_ name: ChunkName, _ ciphertext: [UInt8], root: RootID) async throws {
            try await base.putChunk(name, ciphertext, root: root)
        }
        func sync() async throws { try await base.sync() }
        func deleteAll(under prefix: String) async throws -> Int { try await base.deleteAll(under: prefix) }
    }

    @Test func anEarlyReadIsHandedOverOnceAndAWriteDropsIt() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let base = ReadCountingStore(try DirectoryStore(path: dir + "/s", create: true))
            let manifest = try StoreKey("roots/r0001/manifests/default/aa")
            let record = try StoreKey("roots/r0001/records/default/aa")
            let config = try StoreKey("roots/r0001/configs/default/aa")
            let missing = try StoreKey("roots/r0001/snapshots/default/aa")
            try await base.put(manifest, [1])
            try await base.put(record, [2])
            try await base.put(config, [5])
            let store = EarlyReadStore(base)
            store.readEarly([manifest, record, config, missing, manifest])
            #expect(store.unclaimed == [manifest, record, config, missing])

            // The first get takes the early read (the base is read once), a second reads again.
            #expect(try await store.get(manifest) == [1])
            #expect(base.count(manifest) == 1)
            #expect(try await store.get(manifest) == [1])
            #expect(base.count(manifest) == 2)

            // A write or a delete through the store drops the early read: what comes is the
            // object as it is now.
            try await store.put(record, [4])
            #expect(try await store.get(record) == [4])
            try await store.delete(config)
            #expect(try await store.getIfPresent(config) == nil)

            #expect(try await store.getIfPresent(missing) == nil)
            #expect(store.unclaimed.isEmpty)

            // Reads nobody asks for are cancelled and forgotten.
            store.readEarly([manifest])
            store.cancelUnclaimed()
            #expect(store.unclaimed.isEmpty)
            #expect(try await store.get(manifest) == [1])
        }
    }
}
