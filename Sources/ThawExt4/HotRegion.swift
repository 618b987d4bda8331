/// One block of a file's or directory's content, named by what it is rather than where it lies:
/// inode number and logical block. The same tree gives the same inode numbers in every layout,
/// so a block read in one layout names the same content in the next.
public struct ContentBlock: Hashable, Sendable, Comparable {
    public var inode: UInt32
    public var logical: UInt32

    public init(inode: UInt32, logical: UInt32) {
        self.inode = inode
        self.logical = logical
    }

    public static func < (a: ContentBlock, b: ContentBlock) -> Bool {
        (a.inode, a.logical) < (b.inode, b.logical)
    }
}

/// What a block of a laid-out image holds, for translating a block-level access record from
/// one layout of a tree to another.
public enum BlockRole: Hashable, Sendable {
    /// The superblock and group descriptors (the first chunk).
    case head(block: UInt64)
    /// Content of a regular file or a directory.
    case content(ContentBlock)
    case blockBitmap(group: Int)
    case inodeBitmap(group: Int)
    case inodeTable(group: Int, block: UInt64)
    /// Extent-tree, long-symlink or xattr blocks of an inode, in the order the tail holds them.
    case inodeMetadata(inode: UInt32, block: UInt64)
    /// Free, or data of a file no longer in the tree.
    case unused
}

/// Where the hot region's copies come from: file blocks at their place in the layer regions.
public protocol HotBlockSource {
    /// `count` blocks starting at filesystem block `block` of the regions.
    func blocks(at block: UInt64, count: Int) throws -> [UInt8]
}

/// The hot region: blocks a start of the image read, copied in first-read order between the
/// last layer region and the metadata tail, so that a start reads a few neighbouring chunks
/// instead of a block here and there in many. Regions stay as they are (their chunks are still
/// shared with every image holding the layer); the files and directories involved point their
/// extents at the copies instead.
struct HotPlacement {
    /// First block of the region (the end of the layer regions).
    var start: UInt64
    var blocks: [ContentBlock]
    /// Regular files: their runs with the hot blocks redirected, by node index.
    var fileRuns: [Int: [BlockRun]] = [:]
    /// Directories: hot position of each hot logical block, by node index.
    var directoryBlocks: [Int: [UInt32: UInt64]] = [:]
    /// File blocks to copy: (from, to, count) in blocks.
    var copies: [(from: UInt64, to: UInt64, count: UInt64)] = []

    var end: UInt64 { start + UInt64(blocks.count) }
}

extension Plan {
    /// Assigns each hot block its place, in order, and redirects the content that moves.
    ///
    /// - Throws: `Ext4Error` naming a block listed twice, an inode that is not in the tree or
    ///   is neither a regular file nor a directory, or a logical block past the content's end.
    mutating func placeHot(_ hot: [ContentBlock], start: UInt64) throws {
        var placement = HotPlacement(start: start, blocks: hot)
        var byNode: [Int: [(logical: UInt32, position: UInt64)]] = [:]
        var seen = Set<ContentBlock>()
        seen.reserveCapacity(hot.count)
        for (offset, block) in hot.enumerated() {
            guard seen.insert(block).inserted else {
                throw Ext4Error("hot block \(block.logical) of inode \(block.inode) is listed twice")
            }
            guard block.inode == Ext4.rootInode || (block.inode >= Ext4.firstInode && Int(block.inode) <= maxInode) else {
                throw Ext4Error("hot block names inode \(block.inode), which the tree does not have")
            }
            let index = Self.index(of: block.inode)
            let length: UInt64
            switch nodes[index].kind {
            case .regular: length = nodes[index].dataRuns.reduce(0) { $0 + $1.count }
            case .directory: length = tailDataBlocks[index]
            default: throw Ext4Error("hot block names inode \(block.inode), which is neither a file nor a directory")
            }
            guard UInt64(block.logical) < length else {
                throw Ext4Error("hot block \(block.logical) of inode \(block.inode) is past its \(length) blocks")
            }
            byNode[index, default: []].append((block.logical, start + UInt64(offset)))
        }
        for (index, moved) in byNode {
            let sorted = moved.sorted { $0.logical < $1.logical }
            if nodes[index].kind == .directory {
                placement.directoryBlocks[index] = Dictionary(uniqueKeysWithValues: sorted.map { ($0.logical, $0.position) })
                tailDataBlocks[index] -= UInt64(sorted.count)
            } else {
                placement.fileRuns[index] = Self.redirect(nodes[index].dataRuns, moving: sorted, copies: &placement.copies)
            }
        }
        placement.copies.sort { $0.to < $1.to }
        hotPlacement = placement
    }

    /// `runs` with the blocks at the sorted logical positions of `moving` replaced by theirs;
    /// each replaced block is noted as a copy.
    private static func redirect(_ runs: [BlockRun], moving: [(logical: UInt32, position: UInt64)],
                                 copies: inout [(from: UInt64, to: UInt64, count: UInt64)]) -> [BlockRun] {
        var result: [BlockRun] = []
        func append(_ start: UInt64, _ count: UInt64) {
            guard count > 0 else { return }
            if let last = result.last, last.start + last.count == start {
                result[result.count - 1].count += count
            } else {
                result.append(BlockRun(start: start, count: count))
            }
        }
        var next = 0
        var logical: UInt64 = 0
        for run in runs {
            var offset: UInt64 = 0
            while offset < run.count {
                if next < moving.count, UInt64(moving[next].logical) < logical + run.count {
                    let at = UInt64(moving[next].logical) - logical
                    append(run.start + offset, at - offset)
                    let source = run.start + at
                    let target = moving[next].position
                    append(target, 1)
                    if let last = copies.last, last.from + last.count == source, last.to + last.count == target {
                        copies[copies.count - 1].count += 1
                    } else {
                        copies.append((source, target, 1))
                    }
                    next += 1
                    offset = at + 1
                } else {
                    append(run.start + offset, run.count - offset)
                    offset = run.count
                }
            }
            logical += run.count
        }
        return result
    }

    /// A directory's content runs: hot blocks where they were placed, the others in the tail.
    func directoryRuns(_ index: Int) -> [BlockRun] {
        let hot = hotPlacement.directoryBlocks[index] ?? [:]
        let total = tailDataBlocks[index] + UInt64(hot.count)
        var runs: [BlockRun] = []
        var cold = metadataStart[index]
        for logical in 0..<total {
            let block: UInt64
            if let position = hot[UInt32(logical)] {
                block = position
            } else {
                block = cold
                cold += 1
            }
            if let last = runs.last, last.start + last.count == block {
                runs[runs.count - 1].count += 1
            } else {
                runs.append(BlockRun(start: block, count: 1))
            }
        }
        return runs
    }

    /// Writes the copies of hot file blocks, reading a few megabytes at a time.
    func writeHotCopies(from source: (any HotBlockSource)?, to sink: any BlockSink) throws {
        guard !hotPlacement.copies.isEmpty else { return }
        guard let source else { throw Ext4Error("the image has a hot region but nothing to copy its blocks from") }
        let blockSize = UInt64(Ext4.blockSize)
        for copy in hotPlacement.copies {
            var done: UInt64 = 0
            while done < copy.count {
                let count = min(copy.count - done, 1024)
                let bytes = try source.blocks(at: copy.from + done, count: Int(count))
                guard bytes.count == Int(count * blockSize) else {
                    throw Ext4Error("reading \(count) blocks at block \(copy.from + done) for the hot region gave \(bytes.count) bytes")
                }
                try sink.write(bytes, at: (copy.to + done) * blockSize)
                done += count
            }
        }
    }
}
