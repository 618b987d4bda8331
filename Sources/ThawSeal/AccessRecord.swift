import ThawBinary

/// The chunks one start of an image read, in the order it first read them, so the next start
/// can fetch them ahead of its reads (REAP: record and prefetch).
///
/// Sealed like a manifest: the public part names the manifest and its chunk count, so garbage
/// collection and tools can tell what a record belongs to without a key; the order itself is
/// in the sealed payload, since which files a function touches says something about it.
///
/// ```
/// public:  manifest id (short string) | chunk count u32
/// payload: chunk index u32, one per recorded chunk, first touch first
/// ```
public struct AccessRecord: Sendable, Equatable {
    public static let formatVersion: UInt16 = 1

    /// The manifest (`Manifest.header.id`) whose chunks the indices refer to.
    public var manifestID: String
    /// The manifest's chunk count; every index is below it.
    public var chunkCount: Int
    /// Indices of the chunks read, each once, in first-touch order.
    public var chunks: [UInt32]

    public init(manifestID: String, chunkCount: Int, chunks: [UInt32]) {
        self.manifestID = manifestID
        self.chunkCount = chunkCount
        self.chunks = chunks
    }

    func publicPart() -> [UInt8] {
        var writer = ByteWriter()
        writer.shortString(manifestID)
        writer.u32(UInt32(chunkCount))
        return writer.bytes
    }

    /// The record sealed for `tenant`: only holders of the tenant's key can read the order.
    public func sealed(tenant: Tenant, keys: any TenantKeyProvider) async throws -> [UInt8] {
        var payload = ByteWriter()
        for index in chunks { payload.u32(index) }
        return try await SealedObject.seal(kind: .accessRecord, version: Self.formatVersion, publicPart: publicPart(),
                                           payload: payload.bytes, tenant: tenant, keys: keys)
    }

    /// Opens a sealed record and checks it belongs to `manifest`.
    ///
    /// - Throws: `SealError` — `.malformedManifest` when it is truncated, belongs to another
    ///   manifest or holds an index out of range or twice; `.unsupportedVersion`, `.wrongKey`, `.tampered`.
    public static func open(_ bytes: [UInt8], for manifest: ManifestHeader, keys: any TenantKeyProvider,
                            what: String = "access record") async throws -> AccessRecord {
        let parsed = try SealedObject.parse(bytes, expecting: .accessRecord, versions: formatVersion...formatVersion, what: what)
        let expected = AccessRecord(manifestID: manifest.id, chunkCount: manifest.chunkCount, chunks: [])
        guard parsed.publicPart == expected.publicPart() else {
            throw SealError(.malformedManifest, "\(what) does not belong to manifest \(manifest.id)")
        }
        let payload = try await SealedObject.open(parsed, tenant: manifest.tenant, keys: keys, what: what)
        guard payload.count % 4 == 0 else {
            throw SealError(.malformedManifest, "\(what) has a payload of \(payload.count) bytes, not whole chunk indices")
        }
        var reader = ByteReader(payload, what: what)
        var seen = Set<UInt32>()
        var chunks: [UInt32] = []
        chunks.reserveCapacity(payload.count / 4)
        for _ in 0..<(payload.count / 4) {
            let index = try malformedOnTruncation { try reader.u32("chunk index") }
            guard Int(index) < manifest.chunkCount, seen.insert(index).inserted else {
                throw SealError(.malformedManifest, "\(what) lists chunk \(index) out of range or twice (\(manifest.chunkCount) chunks)")
            }
            chunks.append(index)
        }
        return AccessRecord(manifestID: manifest.id, chunkCount: manifest.chunkCount, chunks: chunks)
    }
}
