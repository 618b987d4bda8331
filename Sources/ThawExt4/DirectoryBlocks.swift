/// Linear ext4 directories (`struct ext4_dir_entry_2`): entries packed into blocks, none
/// crossing a block boundary, the last entry of each block stretched to its end.
///
/// The kernel and e2fsck read linear directories of any size; Thaw writes no hashed index.
enum DirectoryBlocks {
    struct Item {
        var name: [UInt8]
        var inode: UInt32
        var fileType: UInt8
    }

    static func recordLength(nameLength: Int) -> Int { (8 + nameLength + 3) & ~3 }

    /// How many blocks the items take, "." and ".." first.
    static func blockCount(nameLengths: [Int]) -> Int {
        var blocks = 1
        var used = 0
        for length in [1, 2] + nameLengths {
            let size = recordLength(nameLength: length)
            if used + size > Ext4.blockSize {
                blocks += 1
                used = 0
            }
            used += size
        }
        return blocks
    }

    /// Encodes a directory; `items` must already hold "." and ".." first.
    static func encode(_ items: [Item]) -> [UInt8] {
        var blocks: [UInt8] = []
        var block = Record(size: Ext4.blockSize)
        var used = 0
        var lastOffset = -1
        func seal() {
            if lastOffset >= 0 { block.u16(UInt16(Ext4.blockSize - lastOffset), at: lastOffset + 4) }
            blocks += block.bytes
            block = Record(size: Ext4.blockSize)
            used = 0
            lastOffset = -1
        }
        for item in items {
            let size = recordLength(nameLength: item.name.count)
            if used + size > Ext4.blockSize { seal() }
            block.u32(item.inode, at: used)
            block.u16(UInt16(size), at: used + 4)
            block.u8(UInt8(item.name.count), at: used + 6)
            block.u8(item.fileType, at: used + 7)
            block.put(item.name, at: used + 8)
            lastOffset = used
            used += size
        }
        seal()
        return blocks
    }

    static func fileType(_ kind: FileNode.Kind) -> UInt8 {
        switch kind {
        case .regular: return 1
        case .directory: return 2
        case .characterDevice: return 3
        case .blockDevice: return 4
        case .fifo: return 5
        case .socket: return 6
        case .symbolicLink: return 7
        }
    }
}
