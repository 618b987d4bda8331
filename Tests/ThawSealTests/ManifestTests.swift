import Foundation
import Testing
import ThawSeal
import ThawTestSupport

/// The sealed manifest: round trips, and every way it can be wrong gives a clear error.
@Suite struct ManifestTests {
    static func sample(tenant: Tenant = .default, chunks: Int = 9) -> Manifest {
        let salt = Salt(root: .initial, replica: 0)
        let header = ManifestHeader(
            imageDigest: Array(repeating: 0xab, count: 32), imageSize: UInt64(chunks) * 512 * 1024, chunkSize: 512 * 1024,
            root: .initial, saltReplica: 0, tenant: tenant,
            layers: [.init(diffID: Array(repeating: 1, count: 32), offset: 512 * 1024, length: 1 << 20)])
        let refs: [ChunkRef?] = (0..<chunks).map { index in
            guard index % 3 != 2 else { return nil }
            let sealed = ChunkSealer.seal(Array(repeating: UInt8(index + 1), count: 100), salt: salt)
            return ChunkRef(name: sealed.name, key: sealed.key)
        }
        return Manifest(header: header, chunks: refs)
    }

    @Test func roundTripsAndReadsTheClearPartWithoutKeys() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let keys = LocalKeyProvider(directory: dir + "/keys")
            let manifest = Self.sample()
            let bytes = try await manifest.sealed(keys: keys)
            #expect(try await Manifest.open(bytes, keys: keys) == manifest)
            let visible = try Manifest.readPublic(bytes)
            #expect(visible.header == manifest.header)
            #expect(visible.names == manifest.chunks.map { $0?.name })
            // Keys are not in the clear.
            for case let chunk? in manifest.chunks {
                #expect(Self.find(chunk.key.bytes, in: bytes) == false)
            }
            // A fresh data key each time, same id for the same header.
            let again = try await manifest.sealed(keys: keys)
            #expect(again != bytes)
            #expect(manifest.header.id == Self.sample().header.id)
            #expect(manifest.header.id != Self.sample(tenant: try Tenant("other")).header.id)
        }
    }

    @Test func refusesAnotherTenantsKey() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let bytes = try await Self.sample().sealed(keys: LocalKeyProvider(directory: dir + "/a"))
            let other = LocalKeyProvider(directory: dir + "/b")
            _ = try await Self.sample().sealed(keys: other)  // creates a different key for the same tenant
            let error = await #expect(throws: SealError.self) { try await Manifest.open(bytes, keys: other) }
            #expect(error?.kind == .wrongKey)
            #expect(error?.message.contains("tenant 'default'") == true)
            let missing = await #expect(throws: SealError.self) {
                try await Manifest.open(bytes, keys: LocalKeyProvider(directory: dir + "/none"))
            }
            #expect(missing?.kind == .key)
            #expect(missing?.message.contains("does not exist") == true)
        }
    }

    /// Flipping any single byte is detected: as tampering, or as a malformed manifest when the
    /// flip breaks the structure. Never a manifest with different content.
    @Test func detectsAChangeToAnyByte() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let keys = LocalKeyProvider(directory: dir + "/keys")
            let manifest = Self.sample()
            let bytes = try await manifest.sealed(keys: keys)
            for offset in 0..<bytes.count {
                var changed = bytes
                changed[offset] ^= 0x20
                do {
                    let opened = try await Manifest.open(changed, keys: keys)
                    Issue.record("a change at byte \(offset) went unnoticed (opened: \(opened == manifest))")
                } catch let error as SealError {
                    #expect([.tampered, .malformedManifest, .unsupportedVersion, .wrongKey].contains(error.kind), "byte \(offset): \(error)")
                }
            }
        }
    }

    @Test func refusesTruncationTrailingBytesAndUnknownVersions() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let keys = LocalKeyProvider(directory: dir + "/keys")
            let bytes = try await Self.sample().sealed(keys: keys)
            for length in [0, 3, 4, 7, 11, 40, bytes.count / 2, bytes.count - 17, bytes.count - 1] {
                let error = await #expect(throws: SealError.self) { try await Manifest.open(Array(bytes.prefix(length)), keys: keys) }
                #expect(error?.kind == .malformedManifest, "length \(length)")
            }
            let longer = await #expect(throws: SealError.self) { try await Manifest.open(bytes + [0], keys: keys) }
            #expect(longer?.message.contains("after its end") == true)
            var future = bytes
            future[5] = 9  // version, little-endian after magic and kind
            let version = await #expect(throws: SealError.self) { try await Manifest.open(future, keys: keys) }
            #expect(version?.kind == .unsupportedVersion)
            #expect(version?.message.contains("version 9") == true)
            let garbage = #expect(throws: SealError.self) { try Manifest.readPublic(Array("not a manifest at all".utf8)) }
            #expect(garbage?.message.contains("bad magic") == true)
        }
    }

    /// Version 2: a hot region in the header, its block list sealed in the payload.
    @Test func carriesAHotRegionWithItsBlockListSealed() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let keys = LocalKeyProvider(directory: dir + "/keys")
            let plain = Self.sample()
            let blocks: [Manifest.HotBlock] = [.init(inode: 11, logical: 0), .init(inode: 2, logical: 0), .init(inode: 0x1234_5678, logical: 9)]
            var header = plain.header
            header.hot = .init(offset: 2 << 20, length: 3 * 4096, digest: Manifest.hotDigest(blocks))
            let hot = Manifest(header: header, chunks: plain.chunks, hotBlocks: blocks)
            #expect(header.id != plain.header.id, "a relaid image has an id of its own")
            let bytes = try await hot.sealed(keys: keys)
            #expect(try await Manifest.open(bytes, keys: keys) == hot)
            #expect(try Manifest.readPublic(bytes).header == header)
            #expect(!Self.find([0x78, 0x56, 0x34, 0x12, 9, 0, 0, 0], in: bytes), "the block list is sealed")
            // A list that does not match the digest is refused.
            var wrongList = header
            wrongList.hot?.digest = Manifest.hotDigest(Array(blocks.reversed()))
            let mismatched = try await Manifest(header: wrongList, chunks: plain.chunks, hotBlocks: blocks).sealed(keys: keys)
            let error = await #expect(throws: SealError.self) { try await Manifest.open(mismatched, keys: keys) }
            #expect(error?.message.contains("does not match its header's digest") == true)
            // An empty hot region is refused, not taken for a missing one.
            var empty = header
            empty.hot = .init(offset: 2 << 20, length: 0, digest: Manifest.hotDigest(blocks))
            let emptyBytes = try await Manifest(header: empty, chunks: plain.chunks, hotBlocks: blocks).sealed(keys: keys)
            let emptyError = #expect(throws: SealError.self) { try Manifest.readPublic(emptyBytes) }
            #expect(emptyError?.message.contains("empty, outside the image") == true)
            // A manifest without one stays version 1, with the same id as ever.
            #expect(try await plain.sealed(keys: keys)[5] == 1 && bytes[5] == 2)
        }
    }

    static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Bool {
        guard haystack.count >= needle.count else { return false }
        for start in 0...(haystack.count - needle.count) where haystack[start..<(start + needle.count)].elementsEqual(needle) {
            return true
        }
        return false
    }
}

@Suite struct LocalKeyProviderTests {
    @Test func createsAPrivateKeyFileOnceAndReusesIt() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let keys = LocalKeyProvider(directory: dir + "/keys")
            let tenant = try Tenant("acme")
            let dataKey = Array(repeating: UInt8(5), count: 32)
            // Many sealers at once agree on one key.
            let wrapped = try await withThrowingTaskGroup(of: WrappedKey.self) { group in
                for _ in 0..<8 { group.addTask { try await keys.wrap(dataKey, tenant: tenant, context: [1, 2]) } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(Set(wrapped.map(\.keyID)).count == 1)
            for w in wrapped { #expect(try await keys.unwrap(w, tenant: tenant, context: [1, 2]) == dataKey) }
            let attributes = try FileManager.default.attributesOfItem(atPath: keys.path(for: tenant))
            #expect((attributes[.posixPermissions] as? Int) == 0o600)
            let directory = try FileManager.default.attributesOfItem(atPath: dir + "/keys")
            #expect((directory[.posixPermissions] as? Int) == 0o700)
            let context = await #expect(throws: SealError.self) { try await keys.unwrap(wrapped[0], tenant: tenant, context: [1, 3]) }
            #expect(context?.kind == .tampered)
        }
    }

    @Test func refusesAKeyFileOthersCanRead() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let keys = LocalKeyProvider(directory: dir)
            let wrapped = try await keys.wrap(Array(repeating: 1, count: 32), tenant: .default, context: [])
            chmod(keys.path(for: .default), 0o644)
            let error = await #expect(throws: SealError.self) { try await keys.unwrap(wrapped, tenant: .default, context: []) }
            #expect(error?.message.contains("chmod 600") == true)
            try "not a key\n".write(toFile: keys.path(for: .default), atomically: false, encoding: .utf8)
            chmod(keys.path(for: .default), 0o600)
            let garbage = await #expect(throws: SealError.self) { try await keys.unwrap(wrapped, tenant: .default, context: []) }
            #expect(garbage?.message.contains("does not hold a key") == true)
        }
    }
}
