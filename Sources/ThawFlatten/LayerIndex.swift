public import ThawTar
import ThawBinary

/// A layer as the flattener applied it: every entry, and where each regular file's data sits
/// relative to the start of the layer's region.
///
/// A region depends on its layer alone, so with this index the flattener can lay the layer out
/// again (metadata and block addresses) in any image without decompressing or reading the
/// layer; the region's chunks are already known to whoever kept the index. This is what makes
/// an incremental push skip the layers it has pushed before.
public struct LayerIndex: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var entry: TarEntry
        /// First block of the file's data, counted from the region start (regular files only).
        public var dataBlock: UInt64

        public init(entry: TarEntry, dataBlock: UInt64) {
            self.entry = entry
            self.dataBlock = dataBlock
        }
    }

    public static let formatVersion: UInt16 = 1

    /// Bytes of the region (block aligned; the next region starts on the next chunk boundary).
    public var regionLength: UInt64
    /// Bytes of the uncompressed layer tar.
    public var uncompressedBytes: UInt64
    public var entries: [Entry]

    public init(regionLength: UInt64, uncompressedBytes: UInt64, entries: [Entry]) {
        self.regionLength = regionLength
        self.uncompressedBytes = uncompressedBytes
        self.entries = entries
    }

    /// Binary form: version u16, region length u64, uncompressed bytes u64, entry count u32,
    /// then per entry: kind u8, path, link name (u32 length + bytes each), permissions u16,
    /// uid u32, gid u32, size u64, mtime seconds i64 and nanoseconds u32, device major and minor
    /// u32, xattr count u32 with name and value (u32 length + bytes each, names sorted), and the
    /// data block u64. Little-endian.
    public func encoded() -> [UInt8] {
        var w = ByteWriter()
        w.u16(Self.formatVersion)
        w.u64(regionLength)
        w.u64(uncompressedBytes)
        w.u32(UInt32(entries.count))
        for item in entries {
            let e = item.entry
            w.u8(Self.code(e.kind))
            w.blob(e.path)
            w.blob(e.linkName)
            w.u16(e.permissions)
            w.u32(e.uid)
            w.u32(e.gid)
            w.u64(e.size)
            w.i64(e.modificationTime.seconds)
            w.u32(e.modificationTime.nanoseconds)
            w.u32(e.deviceMajor)
            w.u32(e.deviceMinor)
            w.u32(UInt32(e.extendedAttributes.count))
            for name in e.extendedAttributes.keys.sorted() {
                w.blob(Array(name.utf8))
                w.blob(e.extendedAttributes[name]!)
            }
            w.u64(item.dataBlock)
        }
        return w.bytes
    }

    /// Decodes `encoded()`; refuses other versions and anything truncated or left over.
    public init(decoding bytes: [UInt8], what: String = "layer index") throws {
        var r = ByteReader(bytes, what: what)
        do {
            let version = try r.u16("version")
            guard version == Self.formatVersion else {
                throw FlattenError("\(what) has format version \(version); this Thaw reads \(Self.formatVersion)")
            }
            regionLength = try r.u64("region length")
            uncompressedBytes = try r.u64("uncompressed bytes")
            let count = Int(try r.u32("entry count"))
            guard count <= r.remaining / 40 else { throw FlattenError("\(what) claims \(count) entries in \(r.remaining) bytes") }
            entries = []
            entries.reserveCapacity(count)
            for _ in 0..<count {
                let kindCode = try r.u8("kind")
                guard let kind = Self.kind(kindCode) else { throw FlattenError("\(what) has an entry of unknown kind \(kindCode)") }
                var e = TarEntry(kind: kind, path: try r.blob("path"), linkName: try r.blob("link name"))
                e.permissions = try r.u16("permissions")
                e.uid = try r.u32("uid")
                e.gid = try r.u32("gid")
                e.size = try r.u64("size")
                e.modificationTime = Timestamp(seconds: try r.i64("mtime"), nanoseconds: try r.u32("mtime nanoseconds"))
                e.deviceMajor = try r.u32("device major")
                e.deviceMinor = try r.u32("device minor")
                let xattrs = Int(try r.u32("xattr count"))
                for _ in 0..<xattrs {
                    let name = String(decoding: try r.blob("xattr name"), as: UTF8.self)
                    e.extendedAttributes[name] = try r.blob("xattr value")
                }
                entries.append(Entry(entry: e, dataBlock: try r.u64("data block")))
            }
        } catch let error as TruncatedInput {
            throw FlattenError(error.description)
        }
        guard r.remaining == 0 else { throw FlattenError("\(what) has \(r.remaining) bytes after its end") }
    }

    private static let kinds: [TarEntry.Kind] = [.regular, .hardLink, .symbolicLink, .characterDevice, .blockDevice, .directory, .fifo]
    static func code(_ kind: TarEntry.Kind) -> UInt8 { UInt8(kinds.firstIndex(of: kind)!) }
    static func kind(_ code: UInt8) -> TarEntry.Kind? { Int(code) < kinds.count ? kinds[Int(code)] : nil }
}
