import Foundation
import Testing
@testable import ThawExt4
import ThawTestSupport

/// Blocks of the layer regions, from memory.
struct MemoryBlocks: HotBlockSource {
    var blocks: [UInt64: [UInt8]]
    func blocks(at block: UInt64, count: Int) throws -> [UInt8] {
        (0..<UInt64(count)).flatMap { blocks[block + $0] ?? [UInt8](repeating: 0, count: 4096) }
    }
}

/// A small tree with data in place: a short file, a long one, a directory of several blocks.
struct HotTree {
    let root: FileNode
    let small = FileNode(kind: .regular, permissions: 0o644)
    let large = FileNode(kind: .regular, permissions: 0o755)
    let many: FileNode
    var data: [UInt64: [UInt8]] = [:]
    let dataEnd: UInt64

    init() {
        var next = firstData
        func fill(_ node: FileNode, blocks: UInt64, seed: UInt8) -> [(UInt64, [UInt8])] {
            node.dataRuns = [BlockRun(start: next, count: blocks)]
            node.size = blocks * 4096 - 123
            defer { next += blocks }
            return (0..<blocks).map { i in
                (next + i, (0..<4096).map { UInt8(truncatingIfNeeded: Int(i) * 7 + $0 + Int(seed)) })
            }
        }
        var placed = fill(small, blocks: 10, seed: 1)
        placed += fill(large, blocks: 600, seed: 2)
        many = directory((0..<700).map { (String(format: "entry-with-a-longish-name-%04d", $0), FileNode(kind: .regular, permissions: 0o644)) })
        let link = FileNode(kind: .symbolicLink, permissions: 0o777)
        link.symlinkTarget = Array(String(repeating: "t/", count: 60).utf8)
        root = directory([("small", small), ("large", large), ("many", many), ("link", link)])
        for (block, bytes) in placed { data[block] = bytes }
        dataEnd = (next + 127) / 128 * 128
    }

    var source: MemoryBlocks { MemoryBlocks(blocks: data) }

    func content(_ node: FileNode) -> [UInt8] {
        Array(node.dataRuns.flatMap { run in (run.start..<(run.start + run.count)).flatMap { data[$0]! } }.prefix(Int(node.size)))
    }

    /// The inode of `node`'s first block, read back through the layout.
    func inode(of node: FileNode, in layout: Ext4Layout) -> UInt32? {
        guard case .content(let block) = layout.role(of: node.dataRuns[0].start) else { return nil }
        return block.inode
    }

    func write(to path: String, hot: [ContentBlock]) throws -> Ext4Summary {
        let sink = try FileSink(path: path)
        for (block, bytes) in data { try sink.write(bytes, at: block * 4096) }
        return try Ext4Writer.write(root: root, dataEnd: dataEnd, parameters: parameters, hot: hot, hotSource: source, to: sink)
    }
}

@Suite(.serialized) struct HotRegionTests {
    /// Hot blocks move to the region in the order listed; every file and directory still reads
    /// the same, e2fsck finds nothing wrong, and the layouts map each block to its content.
    @Test func hotBlocksMoveInOrderAndEverythingReadsTheSame() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let tree = HotTree()
            let plain = try Ext4Writer.layout(root: tree.root, dataEnd: tree.dataEnd, parameters: parameters)
            let small = try #require(tree.inode(of: tree.small, in: plain))
            let large = try #require(tree.inode(of: tree.large, in: plain))
            #expect(small != large)
            // The directory's inode, found through its first block in the tail.
            var manyInode: UInt32?
            for block in plain.summary.metadataStart..<(plain.summary.metadataStart + plain.summary.metadataBlocks) {
                if case .content(let content) = plain.role(of: block), content.inode != small, content.inode != large,
                   content.inode != 2, content.logical == 2 {
                    manyInode = content.inode
                }
            }
            let many = try #require(manyInode)
            // Scattered blocks of the large file (more than four extents), a run of the small
            // one, two directory blocks and the root's.
            let hot: [ContentBlock] = [
                .init(inode: 2, logical: 0), .init(inode: large, logical: 599), .init(inode: many, logical: 2),
                .init(inode: small, logical: 3), .init(inode: small, logical: 4), .init(inode: small, logical: 5),
                .init(inode: large, logical: 0), .init(inode: large, logical: 17), .init(inode: large, logical: 300),
                .init(inode: large, logical: 301), .init(inode: large, logical: 9), .init(inode: many, logical: 0),
            ]
            let plainPath = dir + "/plain.ext4"
            let hotPath = dir + "/hot.ext4"
            _ = try tree.write(to: plainPath, hot: [])
            let summary = try tree.write(to: hotPath, hot: hot)
            #expect(summary.hotStart == tree.dataEnd && summary.hotBlocks == UInt64(hot.count))
            #expect(summary.metadataStart == tree.dataEnd + UInt64(hot.count))
            for path in [plainPath, hotPath] {
                if let problems = try TestSupport.fsckProblems(path) { Issue.record("e2fsck on \(path):\n\(problems)") }
                for (name, node) in [("small", tree.small), ("large", tree.large)] {
                    _ = try TestSupport.run("debugfs", ["-R", "dump /\(name) \(dir)/out", path])
                    #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/out")) == Data(tree.content(node)), "\(name) in \(path)")
                }
                let listing = try debugfs(path, "ls /many")
                #expect(listing.components(separatedBy: "entry-with").count - 1 == 700)
                #expect(try debugfs(path, "stat /link").contains("Fast link dest") == false)
            }
            // The region holds the blocks in the listed order: file blocks as copies.
            let image = try [UInt8](Data(contentsOf: URL(fileURLWithPath: hotPath)))
            func block(_ number: UInt64) -> [UInt8] { Array(image[Int(number * 4096)..<Int((number + 1) * 4096)]) }
            let copies = [(1, tree.large, 599), (3, tree.small, 3), (5, tree.small, 5), (10, tree.large, 9)]
            for (offset, node, logical) in copies {
                let equal = block(summary.hotStart + UInt64(offset)) == tree.data[node.dataRuns[0].start + UInt64(logical)]
                #expect(equal, "hot block \(offset) is not a copy of logical block \(logical)")
            }
            #expect(try debugfs(hotPath, "ex /large").contains("\(summary.hotStart + 1)"))
            // Layouts name each block's content, and find it again.
            let hotLayout = try Ext4Writer.layout(root: tree.root, dataEnd: tree.dataEnd, parameters: parameters, hot: hot)
            for (offset, content) in hot.enumerated() {
                #expect(hotLayout.role(of: summary.hotStart + UInt64(offset)) == .content(content))
                #expect(hotLayout.block(for: .content(content)) == summary.hotStart + UInt64(offset))
                #expect(plain.block(for: .content(content)).map { plain.role(of: $0) } == .content(content))
            }
            #expect(hotLayout.role(of: tree.large.dataRuns[0].start + 1) == .content(.init(inode: large, logical: 1)))
            #expect(hotLayout.role(of: tree.large.dataRuns[0].start + 17) == .unused, "the original of a moved block")
            #expect(hotLayout.role(of: 0) == .head(block: 0))
            #expect(hotLayout.block(for: plain.role(of: plain.summary.metadataStart)) == summary.metadataStart,
                    "the first block bitmap moves with the tail")
        }
    }

    @Test func badHotListsAreRefusedByName() throws {
        let tree = HotTree()
        let plain = try Ext4Writer.layout(root: tree.root, dataEnd: tree.dataEnd, parameters: parameters)
        let small = try #require(tree.inode(of: tree.small, in: plain))
        let cases: [([ContentBlock], String)] = [
            ([.init(inode: small, logical: 1), .init(inode: small, logical: 1)], "listed twice"),
            ([.init(inode: 99_999, logical: 0)], "which the tree does not have"),
            ([.init(inode: small, logical: 10)], "past its 10 blocks"),
        ]
        for (hot, message) in cases {
            #expect {
                _ = try Ext4Writer.layout(root: tree.root, dataEnd: tree.dataEnd, parameters: parameters, hot: hot)
            } throws: { error in
                "\((error as? Ext4Error)?.message ?? "")".contains(message)
            }
        }
        // A long symlink's block is not content that moves: of the root's four children, only
        // the link is refused as neither file nor directory.
        let refused = (11...14).filter { inode in
            do {
                _ = try Ext4Writer.layout(root: tree.root, dataEnd: tree.dataEnd, parameters: parameters,
                                          hot: [.init(inode: UInt32(inode), logical: 0)])
                return false
            } catch {
                return "\(error)".contains("neither a file nor a directory")
            }
        }
        #expect(refused.count == 1)
    }
}
