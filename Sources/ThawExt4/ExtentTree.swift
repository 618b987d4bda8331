/// Builds ext4 extent trees (`fs/ext4/ext4_extents.h`): up to four extents live in the inode's
/// `i_block`; more go into leaf blocks of 340 extents, indexed from the inode (and from index
/// blocks when even the leaves do not fit four to the inode).
struct ExtentTree {
    /// One initialized extent: `length` blocks of the file from `logical` stored at `physical`.
    struct Extent {
        var logical: UInt32
        var physical: UInt64
        var length: UInt16
    }

    /// The 60 bytes of `i_block`.
    var root: [UInt8]
    /// Tree blocks to write, in the order they were allocated.
    var blocks: [(block: UInt64, bytes: [UInt8])]

    /// Cuts runs into extents no longer than ext4 allows (32768 blocks).
    static func extents(for runs: [BlockRun]) -> [Extent] {
        var extents: [Extent] = []
        var logical: UInt64 = 0
        for run in runs {
            var start = run.start
            var remaining = run.count
            while remaining > 0 {
                let length = min(remaining, Ext4.maxExtentLength)
                extents.append(Extent(logical: UInt32(logical), physical: start, length: UInt16(length)))
                logical += length
                start += length
                remaining -= length
            }
        }
        return extents
    }

    /// How many tree blocks a file with `extentCount` extents needs.
    static func blockCount(extentCount: Int) -> Int {
        var nodes = extentCount
        var total = 0
        while nodes > 4 {
            nodes = (nodes + Ext4.extentsPerBlock - 1) / Ext4.extentsPerBlock
            total += nodes
        }
        return total
    }

    /// Builds the tree, taking tree blocks from `firstBlock` onward.
    init(extents: [Extent], firstBlock: UInt64) {
        var next = firstBlock
        blocks = []
        // Each level is a list of (first logical block, bytes of the entry pointing at it).
        var entries: [(logical: UInt32, bytes: [UInt8])] = extents.map { extent in
            var record = Record(size: 12)
            record.u32(extent.logical, at: 0)
            record.u16(extent.length, at: 4)
            record.u16(UInt16(truncatingIfNeeded: extent.physical >> 32), at: 6)
            record.u32(UInt32(truncatingIfNeeded: extent.physical), at: 8)
            return (extent.logical, record.bytes)
        }
        var depth: UInt16 = 0
        while entries.count > 4 {
            var parents: [(logical: UInt32, bytes: [UInt8])] = []
            var index = 0
            while index < entries.count {
                let slice = entries[index..<min(index + Ext4.extentsPerBlock, entries.count)]
                var node = Record(size: Ext4.blockSize)
                Self.header(&node, entries: slice.count, max: Ext4.extentsPerBlock, depth: depth)
                for (i, entry) in slice.enumerated() { node.put(entry.bytes, at: 12 + 12 * i) }
                let block = next
                next += 1
                blocks.append((block, node.bytes))
                var pointer = Record(size: 12)
                pointer.u32(slice.first!.logical, at: 0)
                pointer.u32(UInt32(truncatingIfNeeded: block), at: 4)
                pointer.u16(UInt16(truncatingIfNeeded: block >> 32), at: 8)
                parents.append((slice.first!.logical, pointer.bytes))
                index += Ext4.extentsPerBlock
            }
            entries = parents
            depth += 1
        }
        var inode = Record(size: 60)
        Self.header(&inode, entries: entries.count, max: 4, depth: depth)
        for (i, entry) in entries.enumerated() { inode.put(entry.bytes, at: 12 + 12 * i) }
        root = inode.bytes
    }

    private static func header(_ record: inout Record, entries: Int, max: Int, depth: UInt16) {
        record.u16(Ext4.extentMagic, at: 0)
        record.u16(UInt16(entries), at: 2)
        record.u16(UInt16(max), at: 4)
        record.u16(depth, at: 6)
        record.u32(0, at: 8)
    }
}
