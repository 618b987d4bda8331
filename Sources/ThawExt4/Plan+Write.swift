/// Emitting the planned filesystem: bitmaps, descriptors, superblock, inode tables and the
/// per-inode tail blocks.
extension Plan {
    mutating func write(to sink: any BlockSink, hotSource: (any HotBlockSource)? = nil) throws {
        let blockBitmaps = try buildBlockBitmaps()
        let (inodeBitmaps, usedDirectories) = buildInodeBitmaps()
        let blockSize = UInt64(Ext4.blockSize)

        // Group descriptors.
        var descriptors = Record(size: Int(descriptorBlocks) * Ext4.blockSize)
        var totalFree: UInt64 = 0
        for group in 0..<groupCount {
            let free = freeBlocks(inGroup: group, bitmap: blockBitmaps)
            totalFree += free
            let usedInodes = max(0, min(inodesPerGroup, maxInode - group * inodesPerGroup))
            let base = group * Ext4.descriptorSize
            descriptors.u32(UInt32(blockBitmapBlock(group)), at: base)
            descriptors.u32(UInt32(inodeBitmapBlock(group)), at: base + 4)
            descriptors.u32(UInt32(inodeTableBlock(group)), at: base + 8)
            descriptors.u16(UInt16(free), at: base + 12)
            descriptors.u16(UInt16(inodesPerGroup - usedInodes), at: base + 14)
            descriptors.u16(UInt16(usedDirectories[group]), at: base + 16)
        }
        freeBlocks = totalFree
        try writeHotCopies(from: hotSource, to: sink)
        try sink.write(superblock(freeBlocks: totalFree), at: 1024)
        try sink.write(descriptors.bytes, at: blockSize)

        for group in 0..<groupCount {
            let range = (group * Ext4.blockSize)..<((group + 1) * Ext4.blockSize)
            try sink.write(Array(blockBitmaps[range]), at: blockBitmapBlock(group) * blockSize)
            try sink.write(Array(inodeBitmaps[range]), at: inodeBitmapBlock(group) * blockSize)
        }

        // Inode tables, one group at a time.
        for group in 0..<groupCount {
            var table = [UInt8](repeating: 0, count: Int(inodeTableBlocks) * Ext4.blockSize)
            let first = group * inodesPerGroup + 1
            let last = min(maxInode, first + inodesPerGroup - 1)
            if first <= last {
                for number in first...last {
                    let index: Int
                    if number == Int(Ext4.rootInode) { index = 0 }
                    else if number >= Int(Ext4.firstInode) { index = number - 10 }
                    else { continue }
                    let record = try inodeRecord(index)
                    let offset = (number - first) * Ext4.inodeSize
                    table.replaceSubrange(offset..<(offset + Ext4.inodeSize), with: record)
                }
            }
            try sink.write(table, at: inodeTableBlock(group) * blockSize)
        }

        // Tail blocks of each inode: directory or symlink data, extent tree, xattr block.
        var pending: [UInt8] = []
        var pendingStart = metadataStart.first ?? tailEnd
        func emit(_ bytes: [UInt8], at block: UInt64) throws {
            if pendingStart + UInt64(pending.count / Ext4.blockSize) != block || pending.count >= 4 << 20 {
                if !pending.isEmpty { try sink.write(pending, at: pendingStart * blockSize) }
                pending.removeAll(keepingCapacity: true)
                pendingStart = block
            }
            pending += bytes
        }
        for (index, node) in nodes.enumerated() {
            let start = metadataStart[index]
            switch node.kind {
            case .directory:
                let blocks = DirectoryBlocks.encode(directoryItems[index]!)
                var logical = 0
                for run in directoryRuns(index) {
                    let bytes = Array(blocks[(logical * Ext4.blockSize)..<((logical + Int(run.count)) * Ext4.blockSize)])
                    if run.start >= tailStart {
                        try emit(bytes, at: run.start)
                    } else {
                        try sink.write(bytes, at: run.start * blockSize)
                    }
                    logical += Int(run.count)
                }
            case .symbolicLink where tailDataBlocks[index] == 1:
                var block = node.symlinkTarget
                block += [UInt8](repeating: 0, count: Ext4.blockSize - block.count)
                try emit(block, at: start)
            default:
                break
            }
            for (block, bytes) in extentTree(index).blocks { try emit(bytes, at: block) }
            if xattrInBlock[index] {
                try emit(ExtendedAttributes.block(xattrs[index]), at: start + tailDataBlocks[index] + treeBlocks[index])
            }
        }
        if !pending.isEmpty { try sink.write(pending, at: pendingStart * blockSize) }
        // The last block: makes the image its full length even if the tail ends early.
        if blockCount > tailEnd {
            try sink.write([UInt8](repeating: 0, count: Ext4.blockSize), at: (blockCount - 1) * blockSize)
        }
    }

    /// The runs of blocks holding a node's content.
    func contentRuns(_ index: Int) -> [BlockRun] {
        let node = nodes[index]
        switch node.kind {
        case .regular: return hotPlacement.fileRuns[index] ?? node.dataRuns
        case .directory: return directoryRuns(index)
        case .symbolicLink:
            return tailDataBlocks[index] > 0 ? [BlockRun(start: metadataStart[index], count: tailDataBlocks[index])] : []
        default: return []
        }
    }

    func extentTree(_ index: Int) -> ExtentTree {
        ExtentTree(extents: ExtentTree.extents(for: contentRuns(index)),
                   firstBlock: metadataStart[index] + tailDataBlocks[index])
    }

    private func buildBlockBitmaps() throws -> [UInt8] {
        var bitmap = [UInt8](repeating: 0, count: groupCount * Ext4.blockSize)
        var overlap = false
        func mark(_ start: UInt64, _ count: UInt64) {
            var block = start
            let end = start + count
            while block < end {
                let byte = Int(block >> 3)
                if block & 7 == 0 && end - block >= 8 {
                    if bitmap[byte] != 0 { overlap = true }
                    bitmap[byte] = 0xff
                    block += 8
                } else {
                    let bit = UInt8(1) << UInt8(block & 7)
                    if bitmap[byte] & bit != 0 { overlap = true }
                    bitmap[byte] |= bit
                    block += 1
                }
            }
        }
        mark(0, 1 + descriptorBlocks)
        for (index, node) in nodes.enumerated() where node.kind == .regular {
            for run in contentRuns(index) {
                guard run.start >= chunkBlocks, run.start + run.count <= tailStart else {
                    throw Ext4Error("file data at blocks \(run.start)+\(run.count) lies outside the data regions")
                }
                mark(run.start, run.count)
            }
        }
        for hot in hotPlacement.directoryBlocks.values {
            for position in hot.values { mark(position, 1) }
        }
        mark(tailStart, tailEnd - tailStart)
        if overlap { throw Ext4Error("two files claim the same data blocks") }
        // Bits past the end of the filesystem in the last group are set, as e2fsck expects.
        mark(blockCount, UInt64(groupCount) * Ext4.blocksPerGroup - blockCount)
        return bitmap
    }

    private func freeBlocks(inGroup group: Int, bitmap: [UInt8]) -> UInt64 {
        let first = UInt64(group) * Ext4.blocksPerGroup
        let blocks = min(Ext4.blocksPerGroup, blockCount - first)
        var used: UInt64 = 0
        for byte in bitmap[(group * Ext4.blockSize)..<((group + 1) * Ext4.blockSize)] {
            used += UInt64(byte.nonzeroBitCount)
        }
        let padding = Ext4.blocksPerGroup - blocks
        return blocks - (used - padding)
    }

    private func buildInodeBitmaps() -> ([UInt8], [Int]) {
        var bitmap = [UInt8](repeating: 0, count: groupCount * Ext4.blockSize)
        var directories = [Int](repeating: 0, count: groupCount)
        func set(_ group: Int, _ bit: Int) {
            bitmap[group * Ext4.blockSize + bit >> 3] |= UInt8(1) << UInt8(bit & 7)
        }
        for inode in 1...maxInode {
            set((inode - 1) / inodesPerGroup, (inode - 1) % inodesPerGroup)
        }
        for group in 0..<groupCount {
            for bit in inodesPerGroup..<(Ext4.blockSize * 8) { set(group, bit) }
        }
        for (index, node) in nodes.enumerated() where node.kind == .directory {
            directories[(Int(Self.inode(ofIndex: index)) - 1) / inodesPerGroup] += 1
        }
        return (bitmap, directories)
    }

    private func superblock(freeBlocks: UInt64) -> [UInt8] {
        var s = Record(size: 1024)
        let inodeCount = UInt32(groupCount * inodesPerGroup)
        s.u32(inodeCount, at: 0x00)
        s.u32(UInt32(blockCount), at: 0x04)
        s.u32(UInt32(freeBlocks), at: 0x0C)
        s.u32(inodeCount - UInt32(maxInode), at: 0x10)
        s.u32(0, at: 0x14)                                   // first data block (4 KiB blocks)
        s.u32(2, at: 0x18)                                   // log2(block size) - 10
        s.u32(2, at: 0x1C)                                   // log2(cluster size) - 10
        s.u32(UInt32(Ext4.blocksPerGroup), at: 0x20)
        s.u32(UInt32(Ext4.blocksPerGroup), at: 0x24)
        s.u32(UInt32(inodesPerGroup), at: 0x28)
        s.u16(0xFFFF, at: 0x36)                              // max mount count: never forced
        s.u16(Ext4.superblockMagic, at: 0x38)
        s.u16(1, at: 0x3A)                                   // state: clean
        s.u16(1, at: 0x3C)                                   // errors: continue
        s.u32(1, at: 0x4C)                                   // dynamic revision
        s.u32(Ext4.firstInode, at: 0x54)
        s.u16(UInt16(Ext4.inodeSize), at: 0x58)
        s.u32(Ext4.compatExtAttr | Ext4.compatSparseSuper2, at: 0x5C)
        s.u32(Ext4.incompatFiletype | Ext4.incompatExtents | Ext4.incompatFlexBG, at: 0x60)
        s.u32(Ext4.roCompatSparseSuper | Ext4.roCompatLargeFile | Ext4.roCompatHugeFile
              | Ext4.roCompatDirNlink | Ext4.roCompatExtraIsize, at: 0x64)
        s.put(Array(parameters.uuid.prefix(16)), at: 0x68)
        s.put(Array(parameters.volumeName.utf8.prefix(16)), at: 0x78)
        s.put(Array(parameters.hashSeed.prefix(16)), at: 0xEC)
        s.u8(1, at: 0xFC)                                    // default hash: half MD4
        s.u16(UInt16(Ext4.extraInodeSize), at: 0x15C)        // min extra isize
        s.u16(UInt16(Ext4.extraInodeSize), at: 0x15E)        // want extra isize
        s.u32(1, at: 0x160)                                  // signed directory hash
        s.u8(4, at: 0x174)                                   // 16 groups per flex group
        // s_backup_bgs (0x24C) stay 0, 0: sparse_super2 with no backup superblocks.
        return s.bytes
    }

    /// The 256-byte on-disk inode of node `index`.
    private func inodeRecord(_ index: Int) throws -> [UInt8] {
        let node = nodes[index]
        var r = Record(size: Ext4.inodeSize)
        let typeBits: UInt16
        switch node.kind {
        case .regular: typeBits = Ext4.modeRegular
        case .directory: typeBits = Ext4.modeDirectory
        case .symbolicLink: typeBits = Ext4.modeSymlink
        case .characterDevice: typeBits = Ext4.modeCharacter
        case .blockDevice: typeBits = Ext4.modeBlock
        case .fifo: typeBits = Ext4.modeFIFO
        case .socket: typeBits = Ext4.modeSocket
        }
        r.u16(typeBits | (node.permissions & 0o7777), at: 0)
        r.u16(UInt16(truncatingIfNeeded: node.uid), at: 2)
        r.u16(UInt16(truncatingIfNeeded: node.uid >> 16), at: 120)
        r.u16(UInt16(truncatingIfNeeded: node.gid), at: 24)
        r.u16(UInt16(truncatingIfNeeded: node.gid >> 16), at: 122)

        let size: UInt64
        switch node.kind {
        case .regular: size = node.size
        case .directory: size = (tailDataBlocks[index] + UInt64(hotPlacement.directoryBlocks[index]?.count ?? 0)) * UInt64(Ext4.blockSize)
        case .symbolicLink: size = UInt64(node.symlinkTarget.count)
        default: size = 0
        }
        r.u32(UInt32(truncatingIfNeeded: size), at: 4)
        r.u32(UInt32(truncatingIfNeeded: size >> 32), at: 108)

        // Times: all four set to the modification time; the extra word holds the epoch bits
        // (for dates outside 1901–2038) and the nanoseconds.
        let low = UInt32(truncatingIfNeeded: node.seconds)
        let epoch = UInt32(truncatingIfNeeded: (node.seconds - Int64(Int32(truncatingIfNeeded: node.seconds))) >> 32) & 3
        let extra = epoch | (node.nanoseconds << 2)
        for offset in [8, 12, 16, 144] { r.u32(low, at: offset) }
        for offset in [132, 136, 140, 148] { r.u32(extra, at: offset) }

        let links = linkCounts[index]
        r.u16(node.kind == .directory && links > 65000 ? 1 : UInt16(min(links, 65000)), at: 26)

        // Content: extents, inline symlink, or device number.
        let tree = extentTree(index)
        var flags: UInt32 = 0
        switch node.kind {
        case .regular, .directory:
            flags |= Ext4.extentsFlag
            r.put(tree.root, at: 40)
        case .symbolicLink:
            if tailDataBlocks[index] > 0 {
                flags |= Ext4.extentsFlag
                r.put(tree.root, at: 40)
            } else {
                r.put(node.symlinkTarget, at: 40)
            }
        case .characterDevice, .blockDevice:
            let major = node.deviceMajor
            let minor = node.deviceMinor
            if major < 256 && minor < 256 {
                r.u32(major << 8 | minor, at: 40)
            } else {
                r.u32((minor & 0xff) | (major << 8) | ((minor & ~0xff) << 12), at: 44)
            }
        case .fifo, .socket:
            break
        }
        r.u32(flags, at: 32)

        var sectors = (contentRuns(index).reduce(0) { $0 + $1.count } + treeBlocks[index]) * 8
        if xattrInBlock[index] {
            let block = metadataStart[index] + tailDataBlocks[index] + treeBlocks[index]
            r.u32(UInt32(block), at: 104)
            sectors += 8
        }
        guard sectors < UInt64(1) << 48 else { throw Ext4Error("file too large for ext4") }
        r.u32(UInt32(truncatingIfNeeded: sectors), at: 28)
        r.u16(UInt16(truncatingIfNeeded: sectors >> 32), at: 116)

        r.u16(UInt16(Ext4.extraInodeSize), at: 128)
        if !xattrs[index].isEmpty && !xattrInBlock[index] {
            ExtendedAttributes.writeInInode(xattrs[index], into: &r)
        }
        return r.bytes
    }
}
