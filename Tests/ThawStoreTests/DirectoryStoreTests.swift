import Foundation
import Testing
import ThawSeal
import ThawStore
import ThawTestSupport

@Suite struct DirectoryStoreTests {
    @Test func putGetExistsListDelete() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let store = try DirectoryStore(path: dir + "/s", create: true)
            let key = try StoreKey("roots/r0001/manifests/default/abc")
            #expect(try await store.exists(key) == false)
            let missing = await #expect(throws: StoreError.self) { try await store.get(key) }
            #expect(missing?.kind == .notFound)
            try await store.put(key, [1, 2, 3])
            try await store.put(key, [4, 5])
            #expect(try await store.get(key) == [4, 5])
            #expect(try await store.exists(key))
            let sealed = ChunkSealer.seal([9, 9, 9], salt: Salt(root: .initial, replica: 0))
            try await store.putChunk(sealed.name, sealed.ciphertext, root: .initial)
            #expect(try await store.getChunk(sealed.name, root: .initial) == sealed.ciphertext)
            let all = Set(try await store.listAll(under: "roots/r0001").map(\.path))
            #expect(all == [key.path, StoreLayout.chunk(sealed.name, root: .initial).path])
            #expect(try await store.listAll(under: "roots/r0002").isEmpty)
            try await store.delete(key)
            try await store.delete(key)
            #expect(try await store.exists(key) == false)
            #expect(throws: StoreError.self) { try DirectoryStore(path: dir + "/absent", create: false) }
            #expect(throws: StoreError.self) { try StoreKey("roots/../etc") }
            #expect(throws: StoreError.self) { try StoreKey("/abs") }
        }
    }

    /// Many writers of one chunk at once: every reader sees the whole chunk, no temporary
    /// file stays behind.
    @Test func concurrentWritersOfOneChunkAreSafe() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let store = try DirectoryStore(path: dir + "/s", create: true)
            let plaintext = (0..<(512 * 1024)).map { UInt8(truncatingIfNeeded: $0 &* 13) }
            let sealed = ChunkSealer.seal(plaintext, salt: Salt(root: .initial, replica: 0))
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<16 {
                    group.addTask { try await store.putChunk(sealed.name, sealed.ciphertext, root: .initial) }
                    group.addTask {
                        if let bytes = try? await store.get(StoreLayout.chunk(sealed.name, root: .initial)) {
                            #expect(bytes == sealed.ciphertext, "a reader never sees a torn chunk")
                        }
                    }
                }
                try await group.waitForAll()
            }
            let folder = dir + "/s/" + StoreLayout.chunk(sealed.name, root: .initial).path
            let entries = try FileManager.default.contentsOfDirectory(atPath: URL(fileURLWithPath: folder).deletingLastPathComponent().path)
            #expect(entries == [sealed.name.hex])
        }
    }

    @Test func aManifestKeyReadsBackAsItsIDRootAndTenant() throws {
        let root = try RootID("r0002"), tenant = try Tenant("acme"), id = String(repeating: "ab", count: 32)
        let location = try #require(StoreLayout.manifestLocation(of: StoreLayout.manifest(id: id, root: root, tenant: tenant)))
        #expect(location.id == id && location.root == root && location.tenant == tenant)
        // Only a manifest's key has a manifest's location.
        #expect(StoreLayout.manifestLocation(of: StoreLayout.accessRecord(id: id, root: root, tenant: tenant)) == nil)
        #expect(StoreLayout.manifestLocation(of: try StoreKey("roots/r0002/manifests/acme")) == nil)
    }

    @Test func parsesStoreLocations() throws {
        #expect(try StoreLocation(parsing: "file:///var/x") == .directory("/var/x"))
        #expect(try StoreLocation(parsing: "rel/dir") == .directory("rel/dir"))
        #expect(try StoreLocation(parsing: "s3://bucket-1/a/b/") == .s3(bucket: "bucket-1", prefix: "a/b"))
        #expect(try StoreLocation(parsing: "s3://bucket-1") == .s3(bucket: "bucket-1", prefix: ""))
        #expect(throws: StoreError.self) { try StoreLocation(parsing: "s3://Bad_Bucket/x") }
        #expect(throws: StoreError.self) { try StoreLocation(parsing: "ftp://x") }
        #expect(throws: StoreError.self) { try StoreLocation(parsing: "file://relative") }
    }
}
