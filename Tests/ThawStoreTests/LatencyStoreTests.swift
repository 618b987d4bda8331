import Foundation
import Testing
import ThawStore
import ThawTestSupport

/// The benchmarks' slowed store: reads wait the delay, and a listing waits it once per page of
/// keys, as an object store's LIST requests would; writes do not.
@Suite struct LatencyStoreTests {
    @Test func readsAndEachPageOfAListingWaitTheDelay() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let base = try DirectoryStore(path: dir + "/s", create: true)
            let keys = try (0..<1001).map { try StoreKey(String(format: "roots/r0001/records/default/%04d", $0)) }
            for key in keys { try await base.put(key, [1]) }
            let store = LatencyStore(base, delay: .milliseconds(150))
            let clock = ContinuousClock()

            // 1,001 keys are two pages: two waits, and every key.
            var began = clock.now
            let listed = try await store.listAll(under: "roots/r0001")
            let listing = clock.now - began
            #expect(listed.map(\.path).sorted() == keys.map(\.path))
            #expect(listing >= .milliseconds(300), "a listing of two pages waited \(listing)")

            began = clock.now
            #expect(try await store.get(keys[0]) == [1])
            let read = clock.now - began
            #expect(read >= .milliseconds(150), "a read waited \(read)")

            // An empty listing is still one request.
            began = clock.now
            #expect(try await store.listAll(under: "roots/r0002").isEmpty)
            let empty = clock.now - began
            #expect(empty >= .milliseconds(150), "an empty listing waited \(empty)")
        }
    }
}
