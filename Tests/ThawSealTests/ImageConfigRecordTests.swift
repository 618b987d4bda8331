import Foundation
import Testing
import ThawSeal
import ThawTestSupport

/// The sealed image config: round trips byte for byte, belongs to one manifest, holds exactly
/// the config the manifest's image digest names, and refuses any changed byte.
@Suite struct ImageConfigRecordTests {
    static let config = Array(#"{"architecture":"amd64","config":{"Cmd":["/bin/handler"],"Env":["SECRET=s3cr3t-value"]},"os":"linux","rootfs":{"diff_ids":[],"type":"layers"}}"#.utf8)

    /// A manifest header whose image digest is SHA-256 of `config`, as a push writes it (a chunk
    /// name is the plain SHA-256 of its bytes).
    static func header(for config: [UInt8], chunks: Int = 9, tenant: Tenant = .default) -> ManifestHeader {
        var header = ManifestTests.sample(tenant: tenant, chunks: chunks).header
        header.imageDigest = ChunkName.of(config).bytes
        return header
    }

    @Test func roundTripsTheBytesAndHidesThem() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let keys = LocalKeyProvider(directory: dir + "/keys")
            let header = Self.header(for: Self.config)
            let record = ImageConfigRecord(manifestID: header.id, configJSON: Self.config)
            let bytes = try await record.sealed(tenant: header.tenant, keys: keys)
            let opened = try await ImageConfigRecord.open(bytes, for: header, keys: keys)
            #expect(opened == record)
            #expect(opened.configJSON == Self.config)
            // The manifest id is public, the config (and its environment) is not.
            #expect(ManifestTests.find(Array(header.id.utf8), in: bytes))
            #expect(!ManifestTests.find(Array("s3cr3t-value".utf8), in: bytes))
            #expect(bytes[4] == UInt8(ascii: "C"))
        }
    }

    @Test func refusesAnotherManifestsConfig() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let keys = LocalKeyProvider(directory: dir + "/keys")
            let header = Self.header(for: Self.config)
            let other = Self.header(for: Self.config, chunks: 10)
            #expect(other.id != header.id)
            let bytes = try await ImageConfigRecord(manifestID: header.id, configJSON: Self.config)
                .sealed(tenant: header.tenant, keys: keys)
            let error = await #expect(throws: SealError.self) { try await ImageConfigRecord.open(bytes, for: other, keys: keys) }
            #expect(error?.kind == .malformedManifest)
            #expect(error?.message.contains("does not belong to manifest \(other.id)") == true)
        }
    }

    /// A record that names the manifest but holds another config: sealed by someone with the
    /// tenant key, it still does not open, because the manifest's image digest names the config.
    @Test func refusesAConfigThatIsNotTheManifestsImage() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let keys = LocalKeyProvider(directory: dir + "/keys")
            let header = Self.header(for: Self.config)
            var changed = Self.config
            changed[changed.count - 3] = UInt8(ascii: "X")
            let bytes = try await ImageConfigRecord(manifestID: header.id, configJSON: changed)
                .sealed(tenant: header.tenant, keys: keys)
            let error = await #expect(throws: SealError.self) { try await ImageConfigRecord.open(bytes, for: header, keys: keys) }
            #expect(error?.kind == .malformedManifest)
            #expect(error?.message.contains("does not match the image digest of manifest \(header.id)") == true)
        }
    }

    @Test func refusesAnyChangedByteATruncationAndAnotherKind() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let keys = LocalKeyProvider(directory: dir + "/keys")
            let header = Self.header(for: Self.config)
            let bytes = try await ImageConfigRecord(manifestID: header.id, configJSON: Self.config)
                .sealed(tenant: header.tenant, keys: keys)
            for position in 0..<bytes.count {
                var changed = bytes
                changed[position] ^= 0x40
                await #expect(throws: SealError.self, "byte \(position)") {
                    try await ImageConfigRecord.open(changed, for: header, keys: keys)
                }
            }
            let truncated = await #expect(throws: SealError.self) {
                try await ImageConfigRecord.open(Array(bytes.dropLast(3)), for: header, keys: keys)
            }
            #expect(truncated?.kind == .malformedManifest)
            // An access record of the same manifest is not an image config.
            let access = try await AccessRecord(manifestID: header.id, chunkCount: header.chunkCount, chunks: [1])
                .sealed(tenant: header.tenant, keys: keys)
            let kind = await #expect(throws: SealError.self) { try await ImageConfigRecord.open(access, for: header, keys: keys) }
            #expect(kind?.kind == .malformedManifest)
            // Another tenant's key does not open it.
            let otherKeys = LocalKeyProvider(directory: dir + "/other-keys")
            _ = try await ImageConfigRecord(manifestID: header.id, configJSON: Self.config)
                .sealed(tenant: header.tenant, keys: otherKeys)  // creates a different key for the same tenant
            let wrong = await #expect(throws: SealError.self) { try await ImageConfigRecord.open(bytes, for: header, keys: otherKeys) }
            #expect(wrong?.kind == .wrongKey)
        }
    }
}
