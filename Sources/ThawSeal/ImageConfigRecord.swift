import Crypto
import ThawBinary

/// The OCI image config (Entrypoint, Cmd, Env, WorkingDir, User, …) of a pushed image, stored
/// next to its manifest so that a worker can run the image from the store alone, without the
/// registry or layout it was pushed from.
///
/// Sealed like a manifest: the public part names the manifest, so garbage collection and tools
/// can tell what a record belongs to without a key; the config itself is in the sealed payload,
/// since its environment often carries settings a tenant does not publish.
///
/// The payload is the config blob byte for byte as the image holds it, not a re-encoding: its
/// SHA-256 is then the manifest's `imageDigest`, which binds the record to the manifest's image
/// even against a holder of the tenant key, and a reader can decode fields Thaw does not model.
///
/// ```
/// public:  manifest id (short string)
/// payload: the config JSON, exactly as in the image
/// ```
public struct ImageConfigRecord: Sendable, Equatable {
    public static let formatVersion: UInt16 = 1

    /// The manifest (`Manifest.header.id`) whose image this config describes.
    public var manifestID: String
    /// The config blob as the image holds it; its SHA-256 is the manifest's `imageDigest`.
    public var configJSON: [UInt8]

    public init(manifestID: String, configJSON: [UInt8]) {
        self.manifestID = manifestID
        self.configJSON = configJSON
    }

    func publicPart() -> [UInt8] {
        var writer = ByteWriter()
        writer.shortString(manifestID)
        return writer.bytes
    }

    /// The record sealed for `tenant`: only holders of the tenant's key can read the config.
    public func sealed(tenant: Tenant, keys: any TenantKeyProvider) async throws -> [UInt8] {
        try await SealedObject.seal(kind: .imageConfig, version: Self.formatVersion, publicPart: publicPart(),
                                    payload: configJSON, tenant: tenant, keys: keys)
    }

    /// Opens a sealed record and checks it belongs to `manifest`: its public part names the
    /// manifest and its payload hashes to the manifest's image digest.
    ///
    /// - Throws: `SealError` — `.malformedManifest` when it is truncated, belongs to another
    ///   manifest or holds a config whose SHA-256 is not the manifest's image digest;
    ///   `.unsupportedVersion`, `.wrongKey`, `.tampered`.
    public static func open(_ bytes: [UInt8], for manifest: ManifestHeader, keys: any TenantKeyProvider,
                            what: String = "image config record") async throws -> ImageConfigRecord {
        let parsed = try SealedObject.parse(bytes, expecting: .imageConfig, versions: formatVersion...formatVersion, what: what)
        let expected = ImageConfigRecord(manifestID: manifest.id, configJSON: [])
        guard parsed.publicPart == expected.publicPart() else {
            throw SealError(.malformedManifest, "\(what) does not belong to manifest \(manifest.id)")
        }
        let payload = try await SealedObject.open(parsed, tenant: manifest.tenant, keys: keys, what: what)
        let digest = Array(SHA256.hash(data: payload))
        guard digest == manifest.imageDigest else {
            throw SealError(.malformedManifest,
                            "\(what) holds a config hashing to sha256:\(Hex.encode(digest)), which does not match the image digest of manifest \(manifest.id) (sha256:\(Hex.encode(manifest.imageDigest)))")
        }
        return ImageConfigRecord(manifestID: manifest.id, configJSON: payload)
    }
}
