import Foundation
import Testing
import ThawImage
import ThawPush
import ThawSample
import ThawSeal
import ThawStore
import ThawTestSupport

/// A push stores the image config next to the manifest, sealed, so that the image can be run
/// from the store alone; a manifest without it gives an error that says what to do.
@Suite struct ImageConfigTests {
    @Test func aPushStoresTheConfigAndTheLookupReadsItBack() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let image = try Image.open(try SampleImage.write(to: dir + "/oci", tag: "s"))
            let store = try DirectoryStore(path: dir + "/store", create: true)
            let keys = LocalKeyProvider(directory: dir + "/keys")
            let report = try await Pusher(store: store, keys: keys).push(image)

            let configuration = try await ImageConfigLookup.load(for: report.header, store: store, keys: keys)
            #expect(configuration.config == image.configuration.config)
            #expect(configuration.config?.cmd == ["/bin/handler"])
            #expect(configuration.config?.workingDir == "/app")
            #expect(configuration.rootfs.diffIDs == image.configuration.rootfs.diffIDs)
            let bytes = try await ImageConfigLookup.loadBytes(for: report.header, store: store, keys: keys)
            #expect(bytes == image.configBytes)

            // Sealed: the stored object names the manifest but does not show the config.
            let key = StoreLayout.imageConfig(id: report.manifestID, root: .initial, tenant: .default)
            #expect(key.path == "roots/r0001/configs/default/\(report.manifestID)")
            let stored = try await store.get(key)
            #expect(!String(decoding: stored, as: UTF8.self).contains("/bin/handler"))
        }
    }

    @Test func aManifestWhoseConfigIsMissingSaysToPushAgain() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let image = try Image.open(try SampleImage.write(to: dir + "/oci", tag: "s"))
            let store = try DirectoryStore(path: dir + "/store", create: true)
            let keys = LocalKeyProvider(directory: dir + "/keys")
            let pusher = Pusher(store: store, keys: keys)
            let report = try await pusher.push(image)
            let key = StoreLayout.imageConfig(id: report.manifestID, root: .initial, tenant: .default)
            try await store.delete(key)

            let error = await #expect(throws: PushError.self) {
                try await ImageConfigLookup.load(for: report.header, store: store, keys: keys)
            }
            #expect(error?.message.contains("manifest \(report.manifestID)") == true)
            #expect(error?.message.contains("push the image again") == true)

            // Pushing again stores it, and nothing else is uploaded.
            let again = try await pusher.push(image)
            #expect(again.manifestID == report.manifestID)
            #expect(again.progress.chunksNew == 0)
            let configuration = try await ImageConfigLookup.load(for: again.header, store: store, keys: keys)
            #expect(configuration.config == image.configuration.config)
        }
    }

    /// A config record moved under another manifest does not open there.
    @Test func aConfigStoredUnderAnotherManifestIsRefused() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let store = try DirectoryStore(path: dir + "/store", create: true)
            let keys = LocalKeyProvider(directory: dir + "/keys")
            let first = try await Pusher(store: store, keys: keys)
                .push(try Image.open(try SampleImage.write(to: dir + "/oci", tag: "a", variant: 1)))
            let second = try await Pusher(store: store, keys: keys)
                .push(try Image.open(try SampleImage.write(to: dir + "/oci", tag: "b", variant: 2)))
            #expect(first.manifestID != second.manifestID)
            let moved = try await store.get(StoreLayout.imageConfig(id: first.manifestID, root: .initial, tenant: .default))
            try await store.put(StoreLayout.imageConfig(id: second.manifestID, root: .initial, tenant: .default), moved)
            let error = await #expect(throws: SealError.self) {
                try await ImageConfigLookup.load(for: second.header, store: store, keys: keys)
            }
            #expect(error?.message.contains("does not belong to manifest \(second.manifestID)") == true)
        }
    }
}
