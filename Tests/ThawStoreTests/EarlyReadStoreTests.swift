import Foundation
import Testing
import ThawStore
import ThawStoreTestSupport
import ThawTestSupport

/// A start's early reads: each is handed to the first `get` of its key, once; a write or a
/// delete through the store drops it; a missing object stays missing.
@Suite struct EarlyReadStoreTests {
    @Test func anEarlyReadIsHandedOverOnceAndAWriteDropsIt() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let base = CountingStore(try DirectoryStore(path: dir + "/s", create: true))
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
            #expect(base.reads(of: manifest) == 1)
            #expect(try await store.get(manifest) == [1])
            #expect(base.reads(of: manifest) == 2)

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
