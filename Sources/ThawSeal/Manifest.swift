import Crypto
import ThawBinary

/// What a manifest says in the clear: enough to size the device, find the salt, and let garbage
/// collection read every chunk reference without any tenant key.
public struct ManifestHeader: Sendable, Equatable {
    /// A layer's chunk-aligned region in the image, for `thaw inspect` and incremental pushes.
    public struct Layer: Sendable, Equatable {
        /// SHA-256 of the uncompressed layer (its diff ID).
        public var diffID: [UInt8]
        public var offset: UInt64
        public var length: UInt64

        public init(diffID: [UInt8], offset: UInt64, length: UInt64) {
            self.diffID = diffID
            self.offset = offset
            self.length = length
        }
    }

    /// SHA-256 of the image config: the image's identity in every transport.
    public var imageDigest: [UInt8]
    public var imageSize: UInt64
    public var chunkSize: UInt32
    public var root: RootID
    public var saltReplica: UInt8
    public var tenant: Tenant
    public var layers: [Layer]
    /// The hot region of an image laid out from an access record (format version 2); nil for
    /// an image laid out from its layers alone.
    public var hot: HotRegion?

    /// Where the hot region lies, and the digest of its block list (which is sealed in the
    /// payload: it says what a start reads). The digest makes a relaid image's id its own.
    public struct HotRegion: Sendable, Equatable {
        public var offset: UInt64
        public var length: UInt64
        /// SHA-256 of the encoded hot block list.
        public var digest: [UInt8]

        public init(offset: UInt64, length: UInt64, digest: [UInt8]) {
            precondition(digest.count == 32, "a hot block list digest is a SHA-256")
            self.offset = offset
            self.length = length
            self.digest = digest
        }
    }

    public init(imageDigest: [UInt8], imageSize: UInt64, chunkSize: UInt32, root: RootID, saltReplica: UInt8,
                tenant: Tenant, layers: [Layer], hot: HotRegion? = nil) {
        self.imageDigest = imageDigest
        self.imageSize = imageSize
        self.chunkSize = chunkSize
        self.root = root
        self.saltReplica = saltReplica
        self.tenant = tenant
        self.layers = layers
        self.hot = hot
    }

    public var chunkCount: Int { Int(imageSize / UInt64(chunkSize)) }
    public var salt: Salt { Salt(root: root, replica: saltReplica) }

    /// The manifest's name in the store: a function of the header alone, so pushing the same
    /// image again for the same tenant, root and chunk size replaces the same manifest.
    public var id: String {
        Hex.encode(SHA256.hash(data: Array("thaw.manifest-id".utf8) + [0] + encoded()))
    }

    func encoded() -> [UInt8] {
        var w = ByteWriter()
        w.raw(imageDigest)
        w.u64(imageSize)
        w.u32(chunkSize)
        w.u32(UInt32(chunkCount))
        w.u8(saltReplica)
        w.shortString(root.value)
        w.shortString(tenant.name)
        w.u16(UInt16(layers.count))
        for layer in layers {
            w.raw(layer.diffID)
            w.u64(layer.offset)
            w.u64(layer.length)
        }
        if let hot {
            w.u64(hot.offset)
            w.u64(hot.length)
            w.raw(hot.digest)
        }
        return w.bytes
    }

    /// The format version the header needs: 2 with a hot region, else 1.
    var formatVersion: UInt16 { hot == nil ? 1 : 2 }

    static func decode(_ r: inout ByteReader, version: UInt16) throws -> ManifestHeader {
        let what = r.what
        let digest = try r.raw(32, "image digest")
        let imageSize = try r.u64("image size")
        let chunkSize = try r.u32("chunk size")
        let chunkCount = try r.u32("chunk count")
        let replica = try r.u8("salt replica")
        let rootText = try r.shortString("root id")
        let tenantText = try r.shortString("tenant")
        let layerCount = Int(try r.u16("layer count"))
        var layers: [Layer] = []
        for index in 0..<layerCount {
            layers.append(Layer(diffID: try r.raw(32, "layer \(index) diff ID"),
                                offset: try r.u64("layer \(index) offset"), length: try r.u64("layer \(index) length")))
        }
        var hot: HotRegion?
        if version >= 2 {
            hot = HotRegion(offset: try r.u64("hot region offset"), length: try r.u64("hot region length"),
                            digest: try r.raw(32, "hot block list digest"))
        }
        guard chunkSize >= 4096, chunkSize.nonzeroBitCount == 1, chunkSize <= 64 << 20 else {
            throw SealError(.malformedManifest, "\(what) has chunk size \(chunkSize), not a power of two from 4 KiB to 64 MiB")
        }
        guard imageSize % UInt64(chunkSize) == 0, imageSize / UInt64(chunkSize) == UInt64(chunkCount) else {
            throw SealError(.malformedManifest, "\(what) has image size \(imageSize) and \(chunkCount) chunks of \(chunkSize) bytes, which disagree")
        }
        for (index, layer) in layers.enumerated()
        where layer.offset % UInt64(chunkSize) != 0 || layer.offset > imageSize || layer.length > imageSize - layer.offset {
            throw SealError(.malformedManifest, "\(what) places layer \(index) at \(layer.offset)+\(layer.length), outside the image or off a chunk boundary")
        }
        if let hot, hot.length == 0 || hot.offset > imageSize || hot.length > imageSize - hot.offset || hot.offset % 4096 != 0
            || hot.length % 4096 != 0 {
            throw SealError(.malformedManifest, "\(what) places its hot region at \(hot.offset)+\(hot.length): empty, outside the image or off a block boundary")
        }
        let root: RootID
        let tenant: Tenant
        do {
            root = try RootID(rootText)
            tenant = try Tenant(tenantText)
        } catch let error as SealError {
            throw SealError(.malformedManifest, "\(what): \(error.message)")
        }
        return ManifestHeader(imageDigest: digest, imageSize: imageSize, chunkSize: chunkSize, root: root,
                              saltReplica: replica, tenant: tenant, layers: layers, hot: hot)
    }
}

/// A stored chunk as a manifest knows it: where to find it and how to decrypt it.
public struct ChunkRef: Sendable, Equatable {
    public var name: ChunkName
    public var key: ChunkKey

    public init(name: ChunkName, key: ChunkKey) {
        self.name = name
        self.key = key
    }
}

/// An image as a list of chunks: the header, then one entry per chunk index, `nil` for an
/// all-zero chunk that is not stored.
///
/// Sealed form (format version 1, see docs/chunk-format.md): a `SealedObject` of kind "M" whose
/// public part is the encoded header followed by the chunk table (32 bytes per chunk: its name,
/// or 32 zero bytes for a zero chunk), and whose payload is the key table (32 bytes per stored
/// chunk, in chunk order). Version 2, for an image with a hot region: the header ends with
/// the region and the digest of its block list, and the payload goes on after the key table
/// with that list (count u32, then inode u32 and logical block u32 per block, in region order).
public struct Manifest: Sendable, Equatable {
    public static let formatVersion: UInt16 = 2

    /// A block of the hot region, named by its inode and logical block (`ContentBlock` of
    /// ThawExt4; the formats here know nothing of ext4).
    public struct HotBlock: Sendable, Equatable, Hashable {
        public var inode: UInt32
        public var logical: UInt32

        public init(inode: UInt32, logical: UInt32) {
            self.inode = inode
            self.logical = logical
        }
    }

    public var header: ManifestHeader
    public var chunks: [ChunkRef?]
    /// The hot region's blocks in region order; empty when the header has no hot region.
    public var hotBlocks: [HotBlock]

    public init(header: ManifestHeader, chunks: [ChunkRef?], hotBlocks: [HotBlock] = []) {
        precondition(chunks.count == header.chunkCount, "a manifest has one entry per chunk")
        precondition(hotBlocks.isEmpty == (header.hot == nil), "a hot region has a block list, and only it")
        self.header = header
        self.chunks = chunks
        self.hotBlocks = hotBlocks
    }

    /// The encoded hot block list, whose SHA-256 the header's hot region carries.
    public static func encodeHotBlocks(_ blocks: [HotBlock]) -> [UInt8] {
        var w = ByteWriter()
        w.u32(UInt32(blocks.count))
        for block in blocks {
            w.u32(block.inode)
            w.u32(block.logical)
        }
        return w.bytes
    }

    public static func hotDigest(_ blocks: [HotBlock]) -> [UInt8] {
        Array(SHA256.hash(data: encodeHotBlocks(blocks)))
    }

    public var storedChunks: Int { chunks.count(where: { $0 != nil }) }

    /// Seals the manifest for its tenant.
    public func sealed(keys: any TenantKeyProvider) async throws -> [UInt8] {
        var publicPart = header.encoded()
        publicPart.reserveCapacity(publicPart.count + 32 * chunks.count)
        var keyTable: [UInt8] = []
        keyTable.reserveCapacity(32 * storedChunks)
        let zero = [UInt8](repeating: 0, count: 32)
        for chunk in chunks {
            publicPart += chunk?.name.bytes ?? zero
            if let chunk { keyTable += chunk.key.bytes }
        }
        if header.hot != nil { keyTable += Self.encodeHotBlocks(hotBlocks) }
        return try await SealedObject.seal(kind: .manifest, version: header.formatVersion, publicPart: publicPart,
                                           payload: keyTable, tenant: header.tenant, keys: keys)
    }

    /// What anyone can read from a sealed manifest: its header and chunk names.
    public struct Public: Sendable {
        public var header: ManifestHeader
        public var names: [ChunkName?]
    }

    /// Reads the header and chunk table without any key (for garbage collection and inspection).
    public static func readPublic(_ bytes: [UInt8], what: String = "manifest") throws -> Public {
        try readPublic(SealedObject.parse(bytes, expecting: .manifest, versions: 1...formatVersion, what: what), what: what)
    }

    static func readPublic(_ parsed: SealedObject.Parsed, what: String) throws -> Public {
        try malformedOnTruncation { try readFields(parsed, what: what) }
    }

    private static func readFields(_ parsed: SealedObject.Parsed, what: String) throws -> Public {
        var reader = ByteReader(parsed.publicPart, what: what)
        let header = try ManifestHeader.decode(&reader, version: parsed.version)
        guard reader.remaining == 32 * header.chunkCount else {
            throw SealError(.malformedManifest, "\(what) has a chunk table of \(reader.remaining) bytes for \(header.chunkCount) chunks")
        }
        var names: [ChunkName?] = []
        names.reserveCapacity(header.chunkCount)
        for _ in 0..<header.chunkCount {
            let bytes = try reader.raw(32, "chunk name")
            names.append(bytes.allSatisfy { $0 == 0 } ? nil : ChunkName(unchecked: bytes))
        }
        return Public(header: header, names: names)
    }

    /// Opens a sealed manifest with the tenant's key.
    ///
    /// - Throws: `SealError` — `.malformedManifest` (truncated or inconsistent), `.unsupportedVersion`,
    ///   `.wrongKey` (another tenant key sealed it), `.tampered` (any byte changed).
    public static func open(_ bytes: [UInt8], keys: any TenantKeyProvider, what: String = "manifest") async throws -> Manifest {
        let parsed = try SealedObject.parse(bytes, expecting: .manifest, versions: 1...formatVersion, what: what)
        let visible = try readPublic(parsed, what: what)
        let payload = try await SealedObject.open(parsed, tenant: visible.header.tenant, keys: keys, what: what)
        let stored = visible.names.count(where: { $0 != nil })
        guard payload.count >= 32 * stored, visible.header.hot != nil || payload.count == 32 * stored else {
            throw SealError(.malformedManifest, "\(what) has \(payload.count / 32) keys for \(stored) stored chunks")
        }
        let keyTable = payload[..<(32 * stored)]
        var hotBlocks: [HotBlock] = []
        if let hot = visible.header.hot {
            let encoded = Array(payload[(32 * stored)...])
            guard Array(SHA256.hash(data: encoded)) == hot.digest else {
                throw SealError(.malformedManifest, "\(what) has a hot block list that does not match its header's digest")
            }
            var reader = ByteReader(encoded, what: what)
            let count = Int(try malformedOnTruncation { try reader.u32("hot block count") })
            guard UInt64(count) * 4096 == hot.length, reader.remaining == 8 * count else {
                throw SealError(.malformedManifest, "\(what) lists \(count) hot blocks for a hot region of \(hot.length) bytes")
            }
            for _ in 0..<count {
                hotBlocks.append(HotBlock(inode: try reader.u32("hot inode"), logical: try reader.u32("hot logical block")))
            }
        }
        var chunks: [ChunkRef?] = []
        chunks.reserveCapacity(visible.names.count)
        var next = 0
        for name in visible.names {
            guard let name else { chunks.append(nil); continue }
            chunks.append(ChunkRef(name: name, key: ChunkKey(unchecked: Array(keyTable[next..<(next + 32)]))))
            next += 32
        }
        return Manifest(header: visible.header, chunks: chunks, hotBlocks: hotBlocks)
    }
}
