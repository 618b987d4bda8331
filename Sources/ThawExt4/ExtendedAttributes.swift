/// ext4's encoding of extended attributes: name prefixes become indexes, entries carry hashes,
/// and they live either inside the inode (after the extra fields) or in one separate block.
///
/// Formats from `fs/ext4/xattr.h` and e2fsprogs `ext_attr.c`; the hashes follow
/// `ext2fs_ext_attr_hash_entry` and `ext2fs_ext_attr_block_rehash`.
enum ExtendedAttributes {
    struct Entry {
        var index: UInt8
        var name: [UInt8]
        var value: [UInt8]

        /// Bytes the entry descriptor takes, name included, padded to 4.
        var descriptorSize: Int { (16 + name.count + 3) & ~3 }
        var paddedValueSize: Int { (value.count + 3) & ~3 }
    }

    /// Space inside a 256-byte inode after the 160 bytes of fields and the 4-byte magic.
    static let inInodeSpace = Ext4.inodeSize - 128 - Ext4.extraInodeSize - 4

    /// Maps full names to ext4 entries, in the order the kernel searches them.
    static func entries(_ attributes: [String: [UInt8]]) throws -> [Entry] {
        var result: [Entry] = []
        for (name, value) in attributes {
            let (index, suffix): (UInt8, String)
            if name == "system.posix_acl_access" {
                (index, suffix) = (2, "")
            } else if name == "system.posix_acl_default" {
                (index, suffix) = (3, "")
            } else if name.hasPrefix("user.") {
                (index, suffix) = (1, String(name.dropFirst(5)))
            } else if name.hasPrefix("trusted.") {
                (index, suffix) = (4, String(name.dropFirst(8)))
            } else if name.hasPrefix("security.") {
                (index, suffix) = (6, String(name.dropFirst(9)))
            } else {
                throw Ext4Error("extended attribute '\(name)' has a namespace ext4 cannot store")
            }
            let nameBytes = Array(suffix.utf8)
            guard nameBytes.count <= 255, index <= 3 || !nameBytes.isEmpty else {
                throw Ext4Error("extended attribute name '\(name)' is empty or longer than 255 bytes")
            }
            let stored = index == 2 || index == 3 ? try convertACL(value, name: name) : value
            result.append(Entry(index: index, name: nameBytes, value: stored))
        }
        return result.sorted {
            ($0.index, $0.name.count) != ($1.index, $1.name.count)
                ? ($0.index, $0.name.count) < ($1.index, $1.name.count)
                : $0.name.lexicographicallyPrecedes($1.name)
        }
    }

    /// True when the entries fit inside the inode.
    static func fitsInInode(_ entries: [Entry]) -> Bool {
        entries.reduce(4) { $0 + $1.descriptorSize + $1.paddedValueSize } <= inInodeSpace
    }

    /// True when the entries fit in one block after its 32-byte header.
    static func fitsInBlock(_ entries: [Entry]) -> Bool {
        entries.reduce(32 + 4) { $0 + $1.descriptorSize + $1.paddedValueSize } <= Ext4.blockSize
    }

    static func hash(_ entry: Entry) -> UInt32 {
        var hash: UInt32 = 0
        for byte in entry.name {
            hash = (hash << 5) ^ (hash >> 27) ^ UInt32(byte)
        }
        if !entry.value.isEmpty {
            var padded = entry.value
            padded += [UInt8](repeating: 0, count: entry.paddedValueSize - entry.value.count)
            for word in stride(from: 0, to: padded.count, by: 4) {
                let value = UInt32(padded[word]) | UInt32(padded[word + 1]) << 8
                    | UInt32(padded[word + 2]) << 16 | UInt32(padded[word + 3]) << 24
                hash = (hash << 16) ^ (hash >> 16) ^ value
            }
        }
        return hash
    }

    /// Writes entries and values into `record` between `start` (first entry) and `end`;
    /// value offsets are relative to `base`.
    private static func layout(_ entries: [Entry], into record: inout Record, start: Int, end: Int, base: Int) -> [UInt32] {
        var position = start
        var valueEnd = end
        var hashes: [UInt32] = []
        for entry in entries {
            var valueOffset = 0
            if !entry.value.isEmpty {
                valueEnd -= entry.paddedValueSize
                record.put(entry.value, at: valueEnd)
                valueOffset = valueEnd - base
            }
            let hash = hash(entry)
            hashes.append(hash)
            record.u8(UInt8(entry.name.count), at: position)
            record.u8(entry.index, at: position + 1)
            record.u16(UInt16(valueOffset), at: position + 2)
            record.u32(0, at: position + 4)
            record.u32(UInt32(entry.value.count), at: position + 8)
            record.u32(hash, at: position + 12)
            record.put(entry.name, at: position + 16)
            position += entry.descriptorSize
        }
        // The 4 zero bytes after the last entry are already zero.
        return hashes
    }

    /// Fills the in-inode area (bytes 160..<256 of the inode record).
    static func writeInInode(_ entries: [Entry], into record: inout Record) {
        let start = 128 + Ext4.extraInodeSize
        record.u32(Ext4.xattrMagic, at: start)
        _ = layout(entries, into: &record, start: start + 4, end: Ext4.inodeSize, base: start + 4)
    }

    /// One xattr block holding every entry.
    static func block(_ entries: [Entry]) -> [UInt8] {
        var record = Record(size: Ext4.blockSize)
        record.u32(Ext4.xattrMagic, at: 0)
        record.u32(1, at: 4)  // h_refcount
        record.u32(1, at: 8)  // h_blocks
        let hashes = layout(entries, into: &record, start: 32, end: Ext4.blockSize, base: 0)
        var blockHash: UInt32 = 0
        for hash in hashes {
            if hash == 0 { blockHash = 0; break }
            blockHash = (blockHash << 16) ^ (blockHash >> 16) ^ hash
        }
        record.u32(blockHash, at: 12)
        return record.bytes
    }

    /// Converts a POSIX ACL from the VFS xattr form (version 2, 8-byte entries, as tar and
    /// `getfattr` carry it) to ext4's on-disk form (version 1, 4-byte entries for the owner,
    /// group, mask and other tags, 8-byte entries for named users and groups).
    static func convertACL(_ value: [UInt8], name: String) throws -> [UInt8] {
        guard value.count >= 4, (value.count - 4) % 8 == 0,
              RecordReader(value).u32(0) == 2 else {
            throw Ext4Error("extended attribute '\(name)' is not a POSIX ACL in the xattr format (version 2)")
        }
        let reader = RecordReader(value)
        var out = Record(size: 4)
        out.u32(1, at: 0)
        for offset in stride(from: 4, to: value.count, by: 8) {
            let tag = reader.u16(offset)
            let permissions = reader.u16(offset + 2)
            let id = reader.u32(offset + 4)
            var entry = Record(size: 4)
            entry.u16(tag, at: 0)
            entry.u16(permissions, at: 2)
            switch tag {
            case 0x01, 0x04, 0x10, 0x20:  // USER_OBJ, GROUP_OBJ, MASK, OTHER
                out.bytes += entry.bytes
            case 0x02, 0x08:  // USER, GROUP
                var full = Record(size: 8)
                full.put(entry.bytes, at: 0)
                full.u32(id, at: 4)
                out.bytes += full.bytes
            default:
                throw Ext4Error("extended attribute '\(name)' holds unknown ACL tag \(tag)")
            }
        }
        return out.bytes
    }
}
