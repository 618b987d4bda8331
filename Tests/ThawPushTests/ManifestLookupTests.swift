import Foundation
import Testing
import ThawImage
import ThawMetadata
import ThawPush
import ThawSeal
import ThawStore
import ThawStoreTestSupport
import ThawTestSupport

/// Finding a manifest by id: a full id the metadata records is named without listing the store
/// (a listing is an origin round trip a start would wait for); anything else is looked for in
/// the roots' listings.
@Suite struct ManifestLookupTests {
    @Test func aFullIdTheMetadataKnowsIsNamedWithoutListing() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            try Fixtures.make("full", in: dir + "/oci")
            let directory = try DirectoryStore(path: dir + "/store", create: true)
            let keys = LocalKeyProvider(directory: dir + "/keys")
            let report = try await Pusher(store: directory, keys: keys, options: PushOptions())
                .push(try Image.open(.ociLayout(path: dir + "/oci", tag: "full")))
            let store = CountingStore(directory)
            let metadata = try await MetadataLocation.sqlite(path: dir + "/metadata.sqlite").open()
            do {
                try await Self.check(report, store: store, keys: keys, metadata: metadata)
            } catch {
                await metadata.close()
                throw error
            }
            await metadata.close()
        }
    }

    /// The lookups of `report`'s manifest, before and after the metadata records it.
    static func check(_ report: PushReport, store: CountingStore, keys: LocalKeyProvider, metadata: any MetadataStore) async throws {
        let id = report.manifestID
        let other = try RootID("r0002")

        // Not recorded yet: found by listing.
        #expect(try await ManifestLookup.locate(id, in: store, roots: [.initial], metadata: metadata) == report.manifestKey)
        #expect(store.listings == 1)

        let header = report.header
        // Recorded where its object is not (a root on its way to deletion): found in the
        // listings all the same.
        let stale = ManifestRecord(id: id, root: header.root, tenant: try Tenant("ghost"), imageSize: header.imageSize,
                                   chunkCount: header.chunkCount, createdAt: Date())
        try await metadata.addManifest(stale)
        #expect(try await ManifestLookup.find(id, in: store, roots: [.initial], metadata: metadata).key == report.manifestKey)
        #expect(store.listings == 2)
        try await metadata.removeManifest(id: id, root: header.root)

        try await metadata.addManifest(ManifestRecord(id: id, root: header.root, tenant: header.tenant, imageSize: header.imageSize,
                                                      chunkCount: header.chunkCount, createdAt: Date()))
        // Recorded: named from the record, in upper case too, and the manifest is there.
        #expect(try await ManifestLookup.locate(id, in: store, roots: [other, .initial], metadata: metadata) == report.manifestKey)
        let found = try await ManifestLookup.find(id.uppercased(), in: store, roots: [.initial], metadata: metadata)
        #expect(found.key == report.manifestKey)
        #expect(try await Manifest.open(found.bytes, keys: keys).header.id == id)
        #expect(store.listings == 2, "a recorded full id lists nothing")

        // A prefix is still looked for in the listings; a root the record is not in is listed
        // and says what it searched.
        #expect(try await ManifestLookup.locate(String(id.prefix(8)), in: store, roots: [.initial], metadata: metadata) == report.manifestKey)
        #expect(store.listings == 3)
        await #expect {
            try await ManifestLookup.locate(id, in: store, roots: [other], metadata: metadata)
        } throws: { error in
            "\(error)".contains("no manifest \(id)") && "\(error)".contains("root r0002")
        }
    }
}
