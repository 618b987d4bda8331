/// Where every block of a planned filesystem lies and what it holds, without writing it: the
/// map that turns a block-level access record of one layout into content blocks, and content
/// blocks back into addresses of another layout of the same tree.
public struct Ext4Layout: Sendable {
    /// A run of content blocks: `count` blocks of `inode` from logical block `logical`.
    struct ContentRun: Sendable {
        var start: UInt64
        var count: UInt64
        var inode: UInt32
        var logical: UInt64
    }

    /// Content runs of every regular file and directory, sorted by address.
    private let runs: [ContentRun]
    /// Content runs by inode, in logical order.
    private let runsByInode: [UInt32: [ContentRun]]
    /// An inode's own tail blocks besides directory content: long symlink, extent tree, xattr.
    struct Tail: Sendable {
        var inode: UInt32
        var start: UInt64
        var count: UInt64
    }

    /// Tails in inode order, which is address order.
    private let tails: [Tail]
    private let tailByInode: [UInt32: Tail]
    public let summary: Ext4Summary
    let chunkBlocks: UInt64
    let groupCount: Int
    let inodeTableBlocks: UInt64
    let tailStart: UInt64

    init(plan: Plan) {
        var runs: [ContentRun] = []
        var byInode: [UInt32: [ContentRun]] = [:]
        var tails: [Tail] = []
        for (index, node) in plan.nodes.enumerated() {
            let inode = Plan.inode(ofIndex: index)
            if node.kind == .regular || node.kind == .directory {
                var logical: UInt64 = 0
                var own: [ContentRun] = []
                for run in plan.contentRuns(index) {
                    own.append(ContentRun(start: run.start, count: run.count, inode: inode, logical: logical))
                    logical += run.count
                }
                runs += own
                byInode[inode] = own
            }
            let coldContent = node.kind == .directory ? plan.tailDataBlocks[index] : 0
            let count = plan.tailDataBlocks[index] + plan.treeBlocks[index] + (plan.xattrInBlock[index] ? 1 : 0) - coldContent
            if count > 0 { tails.append(Tail(inode: inode, start: plan.metadataStart[index] + coldContent, count: count)) }
        }
        runs.sort { $0.start < $1.start }
        self.runs = runs
        runsByInode = byInode
        self.tails = tails
        tailByInode = Dictionary(uniqueKeysWithValues: tails.map { ($0.inode, $0) })
        summary = plan.summary
        chunkBlocks = plan.chunkBlocks
        groupCount = plan.groupCount
        inodeTableBlocks = plan.inodeTableBlocks
        tailStart = plan.tailStart
    }

    /// What filesystem block `block` holds.
    public func role(of block: UInt64) -> BlockRole {
        if block < chunkBlocks { return .head(block: block) }
        if let run = Self.last(in: runs, atOrBefore: block, start: \.start), block < run.start + run.count {
            return .content(ContentBlock(inode: run.inode, logical: UInt32(run.logical + block - run.start)))
        }
        let groups = UInt64(groupCount)
        if block >= tailStart && block < tailStart + groups {
            return .blockBitmap(group: Int(block - tailStart))
        }
        if block >= tailStart + groups && block < tailStart + 2 * groups {
            return .inodeBitmap(group: Int(block - tailStart - groups))
        }
        let tables = tailStart + 2 * groups
        if block >= tables && block < tables + groups * inodeTableBlocks {
            let offset = block - tables
            return .inodeTable(group: Int(offset / inodeTableBlocks), block: offset % inodeTableBlocks)
        }
        if let tail = Self.last(in: tails, atOrBefore: block, start: \.start), block < tail.start + tail.count {
            return .inodeMetadata(inode: tail.inode, block: block - tail.start)
        }
        return .unused
    }

    /// Where this layout keeps what `role` names, or nil when it has no such block.
    public func block(for role: BlockRole) -> UInt64? {
        switch role {
        case .head(let block):
            return block < chunkBlocks ? block : nil
        case .content(let content):
            guard let own = runsByInode[content.inode],
                  let run = Self.last(in: own, atOrBefore: UInt64(content.logical), start: \.logical),
                  UInt64(content.logical) < run.logical + run.count else { return nil }
            return run.start + UInt64(content.logical) - run.logical
        case .blockBitmap(let group):
            return group < groupCount ? tailStart + UInt64(group) : nil
        case .inodeBitmap(let group):
            return group < groupCount ? tailStart + UInt64(groupCount + group) : nil
        case .inodeTable(let group, let block):
            guard group < groupCount, block < inodeTableBlocks else { return nil }
            return tailStart + UInt64(2 * groupCount) + UInt64(group) * inodeTableBlocks + block
        case .inodeMetadata(let inode, let block):
            guard let tail = tailByInode[inode], block < tail.count else { return nil }
            return tail.start + block
        case .unused:
            return nil
        }
    }

    /// The blocks of `inode`'s own metadata in the tail (extent tree, long symlink, xattr
    /// blocks), which a read of its content may need first; empty when it has none.
    public func metadataBlocks(of inode: UInt32) -> Range<UInt64> {
        guard let tail = tailByInode[inode] else { return 0..<0 }
        return tail.start..<(tail.start + tail.count)
    }

    /// The last element whose start is at or before `value`, by binary search.
    private static func last<T>(in items: [T], atOrBefore value: UInt64, start: KeyPath<T, UInt64>) -> T? {
        var low = 0
        var high = items.count
        while low < high {
            let middle = (low + high) / 2
            if items[middle][keyPath: start] <= value { low = middle + 1 } else { high = middle }
        }
        return low == 0 ? nil : items[low - 1]
    }
}
