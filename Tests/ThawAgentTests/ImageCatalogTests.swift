import Foundation
import Testing
import ThawAgent
import ThawCache
import ThawImage
import ThawPush
import ThawSeal
import ThawServe
import ThawStore
import ThawStoreTestSupport
import ThawTestSupport

/// Opening manifests in the agent's catalog: where it looks for them.
@Suite struct ImageCatalogTests {
    @Test func aManifestWhoseLocationIsKnownOpensWithoutListingTheStore() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            try Fixtures.make("full", in: dir + "/oci")
            try Fixtures.make("shared-a", in: dir + "/oci")
            let directory = try DirectoryStore(path: dir + "/store", create: true)
            let keys = LocalKeyProvider(directory: dir + "/keys")
            let pusher = Pusher(store: directory, keys: keys, options: PushOptions())
            let full = try await pusher.push(try Image.open(.ociLayout(path: dir + "/oci", tag: "full")))
            let other = try await pusher.push(try Image.open(.ociLayout(path: dir + "/oci", tag: "shared-a")))
            let store = CountingStore(directory)
            var configuration = AgentConfiguration()
            configuration.prefetching = false
            let catalog = ImageCatalog(origin: AgentOrigin(store: store, roots: [.initial], keys: keys),
                                       cache: try L1Cache(L1Configuration(memoryCapacity: 1 << 20)),
                                       configuration: configuration, metrics: ServeMetrics())

            // Told where it is (as a restore is told where a snapshot's memory is): read from there.
            let location = ManifestLocation(full.header)
            let served = try await catalog.open(full.manifestID, at: location)
            #expect(served.id == full.manifestID)
            #expect(store.listings == 0)
            #expect(store.reads(of: location.manifest) == 1)

            // Not told, and no metadata: the roots are listed.
            #expect(try await catalog.open(other.manifestID).id == other.manifestID)
            #expect(store.listings == 1)

            // Nothing where it is said to be: looked for in the listings, and not found there
            // either, an error that names it.
            let stray = ManifestLocation(id: String(repeating: "ab", count: 32), root: .initial, tenant: location.tenant)
            await #expect { try await catalog.open(stray.id, at: stray) } throws: { error in
                (error as? AgentError)?.kind == .cannotOpen && "\(error)".contains(stray.id)
            }
            #expect(store.listings == 2)
        }
    }
}
