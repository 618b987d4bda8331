import Crypto
public import ThawFlatten
import ThawBinary
public import ThawSeal
public import ThawStore

/// What a push remembers about a layer it has stored, so a later push of any image containing
/// that layer (same chunk size, same salt) neither reads, seals nor uploads it again: the
/// region's chunk references and the layer index the flattener replays.
///
/// Sealed for the tenant (it holds chunk keys and file names) as a `SealedObject` of kind "L".
/// Public part: diff ID (32) | chunk size u32 | salt replica u8. Payload: chunk count u32, then per
/// chunk a flag u8 (0 zero, 1 stored) with name (32) and key (32) when stored; then the layer
/// index as a blob (u32 length + bytes).
public struct LayerRecord: Sendable, Equatable {
    public static let formatVersion: UInt16 = 1

    public var diffID: [UInt8]
    public var chunkSize: UInt32
    public var salt: Salt
    /// The region's chunks, first to last.
    public var chunks: [ChunkRef?]
    public var index: LayerIndex

    public init(diffID: [UInt8], chunkSize: UInt32, salt: Salt, chunks: [ChunkRef?], index: LayerIndex) {
        self.diffID = diffID
        self.chunkSize = chunkSize
        self.salt = salt
        self.chunks = chunks
        self.index = index
    }

    /// Where the record for this layer, chunk size and salt lives.
    public static func key(diffID: [UInt8], chunkSize: UInt32, salt: Salt, tenant: Tenant) -> StoreKey {
        var w = ByteWriter()
        w.raw(Array("thaw.layer-record".utf8) + [0])
        w.raw(diffID)
        w.u32(chunkSize)
        w.u8(salt.replica)
        return StoreLayout.layerRecord(id: Hex.encode(SHA256.hash(data: w.bytes)), root: salt.root, tenant: tenant)
    }

    func publicPart() -> [UInt8] {
        var w = ByteWriter()
        w.raw(diffID)
        w.u32(chunkSize)
        w.u8(salt.replica)
        return w.bytes
    }

    public func sealed(tenant: Tenant, keys: any TenantKeyProvider) async throws -> [UInt8] {
        var w = ByteWriter()
        w.u32(UInt32(chunks.count))
        for chunk in chunks {
            if let chunk {
                w.u8(1)
                w.raw(chunk.name.bytes)
                w.raw(chunk.key.bytes)
            } else {
                w.u8(0)
            }
        }
        w.blob(index.encoded())
        return try await SealedObject.seal(kind: .layerRecord, version: Self.formatVersion, publicPart: publicPart(),
                                           payload: w.bytes, tenant: tenant, keys: keys)
    }

    /// Opens a record and checks it is the one asked for.
    public static func open(_ bytes: [UInt8], expecting diffID: [UInt8], chunkSize: UInt32, salt: Salt,
                            tenant: Tenant, keys: any TenantKeyProvider, what: String) async throws -> LayerRecord {
        let parsed = try SealedObject.parse(bytes, expecting: .layerRecord, versions: formatVersion...formatVersion, what: what)
        let expected = LayerRecord(diffID: diffID, chunkSize: chunkSize, salt: salt, chunks: [],
                                   index: LayerIndex(regionLength: 0, uncompressedBytes: 0, entries: []))
        guard parsed.publicPart == expected.publicPart() else {
            throw PushError("\(what) describes another layer, chunk size or salt")
        }
        let payload = try await SealedObject.open(parsed, tenant: tenant, keys: keys, what: what)
        var r = ByteReader(payload, what: what)
        do {
            let count = Int(try r.u32("chunk count"))
            var chunks: [ChunkRef?] = []
            for _ in 0..<count {
                if try r.u8("chunk flag") == 0 {
                    chunks.append(nil)
                } else {
                    chunks.append(ChunkRef(name: try ChunkName(bytes: try r.raw(32, "chunk name")),
                                           key: try ChunkKey(bytes: try r.raw(32, "chunk key"))))
                }
            }
            let index = try LayerIndex(decoding: try r.blob("layer index"), what: what)
            guard r.remaining == 0, UInt64(count) == (index.regionLength + UInt64(chunkSize) - 1) / UInt64(chunkSize) else {
                throw PushError("\(what) has \(count) chunks for a region of \(index.regionLength) bytes")
            }
            return LayerRecord(diffID: diffID, chunkSize: chunkSize, salt: salt, chunks: chunks, index: index)
        } catch let error as TruncatedInput {
            throw PushError(error.description)
        }
    }
}
