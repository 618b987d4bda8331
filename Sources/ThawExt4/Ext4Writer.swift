/// Where the writer puts bytes: the image file, or memory in tests.
public protocol BlockSink: AnyObject {
    /// Writes `bytes` at byte `offset` of the image.
    func write(_ bytes: [UInt8], at offset: UInt64) throws
}

/// Choices that shape the image but not its content.
public struct Ext4Parameters: Sendable {
    /// Alignment of the image size (and of the data regions the caller laid out), in bytes.
    public var chunkSize: UInt64
    /// Filesystem UUID; Thaw derives it from the image digest so the output is deterministic.
    public var uuid: [UInt8]
    /// Seed for directory hashing, derived the same way.
    public var hashSeed: [UInt8]
    public var volumeName: String

    public init(chunkSize: UInt64, uuid: [UInt8], hashSeed: [UInt8], volumeName: String = "thaw") {
        self.chunkSize = chunkSize
        self.uuid = uuid
        self.hashSeed = hashSeed
        self.volumeName = volumeName
    }
}

/// What the writer produced.
public struct Ext4Summary: Sendable, Equatable {
    /// Filesystem size in 4 KiB blocks; the image file is exactly this long.
    public var blockCount: UInt64
    public var groupCount: Int
    public var inodesPerGroup: Int
    /// Inodes in use, the ten reserved ones included.
    public var usedInodes: Int
    /// First block of the metadata tail (bitmaps, inode tables, directories, extent blocks).
    public var metadataStart: UInt64
    public var metadataBlocks: UInt64
    public var freeBlocks: UInt64
    /// First block of the hot region, which is the end of the layer regions with or without
    /// one, and its length in blocks (zero without one); the region ends where the metadata
    /// tail starts.
    public var hotStart: UInt64 = 0
    public var hotBlocks: UInt64 = 0

    public var imageSize: UInt64 { blockCount * UInt64(Ext4.blockSize) }
}

/// Writes the metadata of an ext4 filesystem around file data that is already in place.
///
/// Layout: the superblock and group descriptors in the first chunk; file data in the regions
/// the caller wrote (blocks `chunkBlocks..<dataEnd`); then the metadata tail: every group's
/// block and inode bitmaps and inode table (flex_bg lets them live anywhere), then per inode its
/// directory or long-symlink blocks, extent tree blocks and xattr block. No journal, no
/// superblock backups (sparse_super2 with none), no resize inode, no checksums: the image is
/// read-only and its chunks are verified by content elsewhere. Everything is ordered by name,
/// so the same tree always gives the same bytes.
public enum Ext4Writer {
    /// Writes the filesystem of `root` around data already in place up to `dataEnd`.
    ///
    /// - Parameters:
    ///   - hot: content blocks to copy into a hot region at `dataEnd`, in this order (see
    ///     `HotPlacement`); the tail follows the region.
    ///   - hotSource: where the hot file blocks are read from, at their place in the regions.
    public static func write(root: FileNode, dataEnd: UInt64, parameters: Ext4Parameters, hot: [ContentBlock] = [],
                             hotSource: (any HotBlockSource)? = nil, to sink: any BlockSink) throws -> Ext4Summary {
        var plan = try Plan(root: root, dataEnd: dataEnd, parameters: parameters, hot: hot)
        try plan.write(to: sink, hotSource: hotSource)
        return plan.summary
    }

    /// The layout `write` would produce, without writing: what each block holds.
    public static func layout(root: FileNode, dataEnd: UInt64, parameters: Ext4Parameters,
                              hot: [ContentBlock] = []) throws -> Ext4Layout {
        Ext4Layout(plan: try Plan(root: root, dataEnd: dataEnd, parameters: parameters, hot: hot))
    }

    /// The first block after the superblock chunk: where the first data region may start.
    public static func firstDataBlock(chunkSize: UInt64) -> UInt64 { chunkSize / UInt64(Ext4.blockSize) }

    /// Filesystem block size in bytes.
    public static let blockSize = Ext4.blockSize
}

/// Everything decided before a byte is written: inode numbers, geometry, block addresses.
struct Plan {
    let parameters: Ext4Parameters
    let chunkBlocks: UInt64
    /// Nodes in inode-number order: index 0 is the root (inode 2), index i > 0 is inode 10 + i.
    var nodes: [FileNode] = []
    var numbers: [ObjectIdentifier: UInt32] = [:]
    var linkCounts: [Int] = []
    /// Directories: their entries, "." and ".." first.
    var directoryItems: [Int: [DirectoryBlocks.Item]] = [:]
    var xattrs: [[ExtendedAttributes.Entry]] = []
    var xattrInBlock: [Bool] = []
    /// Blocks of file data (directories, long symlinks) each node keeps in the tail.
    var tailDataBlocks: [UInt64] = []
    var treeBlocks: [UInt64] = []
    var metadataStart: [UInt64] = []
    var hotPlacement = HotPlacement(start: 0, blocks: [])

    var groupCount = 1
    var inodesPerGroup = 16
    var inodeTableBlocks: UInt64 = 1
    var tailStart: UInt64 = 0
    var tailEnd: UInt64 = 0
    var blockCount: UInt64 = 0
    var descriptorBlocks: UInt64 = 1
    var freeBlocks: UInt64 = 0

    var maxInode: Int { nodes.count <= 1 ? Int(Ext4.firstInode) - 1 : 10 + nodes.count - 1 }

    init(root: FileNode, dataEnd: UInt64, parameters: Ext4Parameters, hot: [ContentBlock] = []) throws {
        guard root.kind == .directory else { throw Ext4Error("the root of the tree is not a directory") }
        guard parameters.chunkSize >= UInt64(Ext4.blockSize), parameters.chunkSize % UInt64(Ext4.blockSize) == 0 else {
            throw Ext4Error("chunk size \(parameters.chunkSize) is not a multiple of \(Ext4.blockSize)")
        }
        self.parameters = parameters
        chunkBlocks = parameters.chunkSize / UInt64(Ext4.blockSize)
        try number(root)
        try measure()
        let regionsEnd = max(dataEnd, chunkBlocks)
        try placeHot(hot, start: regionsEnd)
        measureTrees()
        try placeGroups(dataEnd: hotPlacement.end)
    }

    func number(of node: FileNode) -> UInt32 { numbers[ObjectIdentifier(node)]! }

    /// Numbers inodes directory by directory (siblings get consecutive numbers), depth first,
    /// and records link counts and directory entries.
    private mutating func number(_ root: FileNode) throws {
        nodes = [root]
        linkCounts = [2]
        numbers[ObjectIdentifier(root)] = Ext4.rootInode
        var pending: [(node: FileNode, parent: UInt32)] = [(root, Ext4.rootInode)]
        while let (directory, parent) = pending.popLast() {
            let own = number(of: directory)
            var items = [
                DirectoryBlocks.Item(name: [UInt8(ascii: ".")], inode: own, fileType: 2),
                DirectoryBlocks.Item(name: [UInt8(ascii: "."), UInt8(ascii: ".")], inode: parent, fileType: 2),
            ]
            var subdirectories: [FileNode] = []
            for (name, entry) in directory.sortedChildren {
                guard !name.isEmpty, name.count <= Ext4.maxNameLength, !name.contains(0), !name.contains(UInt8(ascii: "/")),
                      name != [UInt8(ascii: ".")], name != [UInt8(ascii: "."), UInt8(ascii: ".")] else {
                    throw Ext4Error("'\(String(decoding: name, as: UTF8.self))' is not a valid ext4 file name (1 to 255 bytes, no '/' or NUL)")
                }
                let child = entry.node
                let id = ObjectIdentifier(child)
                if let existing = numbers[id] {
                    guard child.kind != .directory else {
                        throw Ext4Error("directory '\(String(decoding: name, as: UTF8.self))' is linked twice")
                    }
                    linkCounts[Self.index(of: existing)] += 1
                    items.append(.init(name: name, inode: existing, fileType: DirectoryBlocks.fileType(child.kind)))
                    continue
                }
                let assigned = UInt32(Ext4.firstInode) + UInt32(nodes.count - 1)
                numbers[id] = assigned
                nodes.append(child)
                linkCounts.append(child.kind == .directory ? 2 : 1)
                items.append(.init(name: name, inode: assigned, fileType: DirectoryBlocks.fileType(child.kind)))
                if child.kind == .directory {
                    subdirectories.append(child)
                    linkCounts[Self.index(of: own)] += 1
                }
            }
            directoryItems[Self.index(of: own)] = items
            for subdirectory in subdirectories.reversed() { pending.append((subdirectory, own)) }
        }
        guard nodes.count + 10 < Int(UInt32.max) else { throw Ext4Error("too many files for ext4") }
    }

    static func index(of inode: UInt32) -> Int { inode == Ext4.rootInode ? 0 : Int(inode) - 10 }
    static func inode(ofIndex index: Int) -> UInt32 { index == 0 ? Ext4.rootInode : UInt32(index + 10) }

    /// Counts the tail blocks each inode needs and checks what ext4 cannot hold.
    private mutating func measure() throws {
        for node in nodes {
            let entries = try ExtendedAttributes.entries(node.extendedAttributes)
            let inBlock = !entries.isEmpty && !ExtendedAttributes.fitsInInode(entries)
            if inBlock && !ExtendedAttributes.fitsInBlock(entries) {
                throw Ext4Error("extended attributes of one file take more than one 4 KiB block")
            }
            xattrs.append(entries)
            xattrInBlock.append(inBlock)
        }
        for node in nodes {
            var data: UInt64 = 0
            switch node.kind {
            case .directory:
                let lengths = directoryItems[tailDataBlocks.count]!.dropFirst(2).map(\.name.count)
                data = UInt64(DirectoryBlocks.blockCount(nameLengths: lengths))
            case .symbolicLink:
                guard !node.symlinkTarget.isEmpty, node.symlinkTarget.count < Ext4.blockSize, !node.symlinkTarget.contains(0) else {
                    throw Ext4Error("symbolic link target of \(node.symlinkTarget.count) bytes is empty, contains NUL or exceeds 4095 bytes")
                }
                if node.symlinkTarget.count >= Ext4.fastSymlinkLimit { data = 1 }
            case .regular:
                let blocks = node.dataRuns.reduce(0) { $0 + $1.count }
                guard blocks * UInt64(Ext4.blockSize) >= node.size else {
                    throw Ext4Error("a file of \(node.size) bytes has only \(blocks) blocks of data")
                }
                guard blocks <= UInt64(UInt32.max) else { throw Ext4Error("a file of \(node.size) bytes exceeds ext4's 16 TiB limit") }
            default:
                break
            }
            tailDataBlocks.append(data)
        }
    }

    /// Counts each inode's extent-tree blocks, once the hot region has split its runs. Tail
    /// addresses are not known yet; a placeholder gives the same extent count, since tail
    /// blocks never adjoin the hot region's.
    private mutating func measureTrees() {
        let placeholder: UInt64 = 1 << 40
        metadataStart = [UInt64](repeating: placeholder, count: nodes.count)
        treeBlocks = nodes.indices.map { index in
            UInt64(ExtentTree.blockCount(extentCount: ExtentTree.extents(for: contentRuns(index)).count))
        }
        metadataStart = []
    }

    /// Chooses group count, inodes per group and every tail address.
    private mutating func placeGroups(dataEnd: UInt64) throws {
        let perNode = nodes.indices.map { tailDataBlocks[$0] + treeBlocks[$0] + (xattrInBlock[$0] ? 1 : 0) }
        let tailContent = perNode.reduce(0, +)
        let inodes = UInt64(maxInode)
        tailStart = dataEnd
        var groups = max(UInt64(1), (dataEnd + tailContent + 2 + Ext4.blocksPerGroup - 1) / Ext4.blocksPerGroup)
        var total: UInt64 = 0
        var perGroup: UInt64 = 16
        while true {
            perGroup = max(16, ((inodes + groups - 1) / groups + 15) / 16 * 16)
            if perGroup > Ext4.blocksPerGroup {
                groups = (inodes + Ext4.blocksPerGroup - 1) / Ext4.blocksPerGroup
                continue
            }
            let tableBlocks = perGroup * UInt64(Ext4.inodeSize) / UInt64(Ext4.blockSize)
            let end = tailStart + groups * (2 + tableBlocks) + tailContent
            total = (end + chunkBlocks - 1) / chunkBlocks * chunkBlocks
            let needed = (total + Ext4.blocksPerGroup - 1) / Ext4.blocksPerGroup
            if needed > groups { groups = needed; continue }
            if needed < groups {
                // More groups than blocks (many inodes, little data): make the last group real.
                total = ((groups - 1) * Ext4.blocksPerGroup + 1 + chunkBlocks - 1) / chunkBlocks * chunkBlocks
            }
            inodeTableBlocks = tableBlocks
            break
        }
        guard total <= UInt64(UInt32.max) else { throw Ext4Error("filesystem of \(total) blocks exceeds 16 TiB") }
        groupCount = Int(groups)
        inodesPerGroup = Int(perGroup)
        blockCount = total
        descriptorBlocks = (groups * UInt64(Ext4.descriptorSize) + UInt64(Ext4.blockSize) - 1) / UInt64(Ext4.blockSize)
        guard 1 + descriptorBlocks <= chunkBlocks else {
            throw Ext4Error("\(groups) group descriptors do not fit in the first chunk; use a larger chunk size")
        }
        var cursor = tailStart + groups * (2 + inodeTableBlocks)
        metadataStart = perNode.map { count in
            defer { cursor += count }
            return cursor
        }
        tailEnd = cursor
    }

    func blockBitmapBlock(_ group: Int) -> UInt64 { tailStart + UInt64(group) }
    func inodeBitmapBlock(_ group: Int) -> UInt64 { tailStart + UInt64(groupCount + group) }
    func inodeTableBlock(_ group: Int) -> UInt64 { tailStart + UInt64(2 * groupCount) + UInt64(group) * inodeTableBlocks }

    var summary: Ext4Summary {
        Ext4Summary(blockCount: blockCount, groupCount: groupCount, inodesPerGroup: inodesPerGroup,
                    usedInodes: maxInode, metadataStart: tailStart, metadataBlocks: tailEnd - tailStart,
                    freeBlocks: freeBlocks, hotStart: hotPlacement.start, hotBlocks: UInt64(hotPlacement.blocks.count))
    }
}
