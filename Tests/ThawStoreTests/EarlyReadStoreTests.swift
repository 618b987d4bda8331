import Foundation
import Testing
import ThawStore
import ThawTestSupport

/// A start's early reads: each is handed to the first `get` of its key, once; a write through
/// the store drops it; a missing object stays missing.
@Suite struct EarlyReadStoreTests {
    @Test func anEarlyReadIsHandedOverOnceAndAWriteDropsIt() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let base = try DirectoryStore(path: dir + "/s", create: true)
            let manifest = try StoreKey("roots/r0001/manifests/default/aa")
            let record = try StoreKey("roots/r0001/records/default/aa")
            let missing = try StoreKey("roots/r0001/configs/default/aa")
            try await base.put(manifest, [1])
            try await base.put(record, [2])
            let store = EarlyReadStore(base)
            store.readEarly([manifest, record, missing, manifest])
            #expect(store.unclaimed == [manifest, record, missing])

            // Changed behind the store's back after the early read: the first get has what was
            // read early (the read had finished), the second reads again.
            try await Task.sleep(for: .milliseconds(200))
            try await base.put(manifest, [3])
            #expect(try await store.get(manifest) == [1])
            #expect(try await store.get(manifest) == [3])

            // A write through the store replaces what was read early.
            try await store.put(record, [4])
            #expect(try await store.get(record) == [4])

            #expect(try await store.getIfPresent(missing) == nil)
            #expect(store.unclaimed.isEmpty)
        }
    }
}
