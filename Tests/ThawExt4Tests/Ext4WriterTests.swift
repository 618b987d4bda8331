import Foundation
import Testing
@testable import ThawExt4
import ThawTestSupport

/// Writes into a regular file, so real tools can read the result.
final class FileSink: BlockSink {
    let handle: FileHandle
    init(path: String) throws {
        FileManager.default.createFile(atPath: path, contents: nil)
        handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
    }
    func write(_ bytes: [UInt8], at offset: UInt64) throws {
        try handle.seek(toOffset: offset)
        try handle.write(contentsOf: bytes)
    }
    deinit { try? handle.close() }
}

let parameters = Ext4Parameters(chunkSize: 512 * 1024, uuid: Array(0..<16), hashSeed: Array(16..<32))
let firstData = Ext4Writer.firstDataBlock(chunkSize: 512 * 1024)

func directory(_ children: [(String, FileNode)]) -> FileNode {
    let node = FileNode(kind: .directory, permissions: 0o755, seconds: 1_700_000_000)
    for (name, child) in children { node.children[Array(name.utf8)] = DirectoryEntry(node: child, layer: 0) }
    return node
}

/// Writes `root` with file data already placed, checks it with e2fsck, and returns debugfs's view.
func writeAndCheck(_ root: FileNode, dataEnd: UInt64, in dir: String, data: [(UInt64, [UInt8])] = []) throws -> (String, Ext4Summary) {
    let path = dir + "/fs.ext4"
    let sink = try FileSink(path: path)
    for (block, bytes) in data { try sink.write(bytes, at: block * 4096) }
    let summary = try Ext4Writer.write(root: root, dataEnd: dataEnd, parameters: parameters, to: sink)
    let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as! UInt64
    #expect(size == summary.imageSize)
    #expect(summary.imageSize % parameters.chunkSize == 0)
    if let problems = try TestSupport.fsckProblems(path) {
        Issue.record("e2fsck found problems:\n\(problems)")
    }
    return (path, summary)
}

func debugfs(_ image: String, _ request: String) throws -> String {
    try TestSupport.run("debugfs", ["-R", request, image]).output
}

@Suite(.serialized) struct Ext4WriterTests {
    @Test func writesAnEmptyFilesystem() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let (path, summary) = try writeAndCheck(directory([]), dataEnd: firstData, in: dir)
            #expect(summary.groupCount == 1)
            let stats = try TestSupport.run("dumpe2fs", ["-h", path]).output
            #expect(stats.contains("Filesystem UUID:          00010203-0405-0607-0809-0a0b0c0d0e0f"))
            #expect(stats.contains("extent") && stats.contains("flex_bg") && stats.contains("sparse_super2"))
            #expect(!stats.contains("has_journal"))
        }
    }

    @Test(arguments: [3, 5, 341 * 4 + 7])
    func buildsExtentTreesOfEveryDepth(runCount: Int) throws {
        // Every other block, so no two runs merge: 3 runs fit the inode, 5 need one leaf,
        // 1371 need an index level above several leaves.
        try TestSupport.withTemporaryDirectory { dir in
            let file = FileNode(kind: .regular, permissions: 0o644)
            var data: [(UInt64, [UInt8])] = []
            var expected: [UInt8] = []
            for i in 0..<runCount {
                let block = firstData + UInt64(2 * i)
                let bytes = [UInt8](repeating: UInt8(truncatingIfNeeded: i), count: 4096)
                file.dataRuns.append(BlockRun(start: block, count: 1))
                data.append((block, bytes))
                expected += bytes
            }
            file.size = UInt64(expected.count - 100)
            let end = (firstData + UInt64(2 * runCount) + 127) / 128 * 128
            let (path, _) = try writeAndCheck(directory([("f", file)]), dataEnd: end, in: dir, data: data)
            _ = try TestSupport.run("debugfs", ["-R", "dump /f \(dir)/out", path])
            let out = try Data(contentsOf: URL(fileURLWithPath: dir + "/out"))
            #expect(out == Data(expected.prefix(expected.count - 100)))
            let depth = try debugfs(path, "ex /f")
            #expect(depth.contains(runCount <= 4 ? "0/ 0" : runCount <= 340 * 4 ? "1/ 1" : "2/ 2"))
        }
    }

    @Test func holdsAFileLargerThan4GiB() throws {
        // The data blocks are left as holes (zeros): only the metadata is under test.
        try TestSupport.withTemporaryDirectory { dir in
            let size: UInt64 = (4 << 30) + 12 * 1024
            let file = FileNode(kind: .regular, permissions: 0o600)
            file.size = size
            file.dataRuns = [BlockRun(start: firstData, count: (size + 4095) / 4096)]
            let end = (firstData + file.dataRuns[0].count + 127) / 128 * 128
            let (path, summary) = try writeAndCheck(directory([("big", file)]), dataEnd: end, in: dir)
            #expect(summary.groupCount > 32)
            let stat = try debugfs(path, "stat /big")
            #expect(stat.contains("Size: \(size)"))
        }
    }

    @Test func writesADirectoryOf50000Entries() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let many = directory((0..<50_000).map { (String(format: "file-%05d", $0), FileNode(kind: .regular, permissions: 0o644)) })
            let (path, summary) = try writeAndCheck(directory([("many", many)]), dataEnd: firstData, in: dir)
            #expect(summary.usedInodes == 10 + 50_001)
            #expect(summary.groupCount >= 2, "more inodes than one group holds")
            let listing = try debugfs(path, "ls -l /many")
            #expect(listing.components(separatedBy: "file-").count - 1 == 50_000)
            #expect(listing.contains("file-49999"))
        }
    }

    @Test func storesExtendedAttributesInTheInodeAndInABlock() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let small = FileNode(kind: .regular, permissions: 0o4755)
            small.extendedAttributes = ["security.capability": [0, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]]
            let large = FileNode(kind: .regular, permissions: 0o644)
            for i in 0..<6 { large.extendedAttributes["user.attribute-\(i)"] = Array(String(repeating: "v", count: 40).utf8) }
            let acl = FileNode(kind: .directory, permissions: 0o750)
            // VFS form: version 2; user::rwx, user:1000:r-x, group::r-x, mask::r-x, other::---.
            var value: [UInt8] = [2, 0, 0, 0]
            for (tag, perm, id) in [(1, 7, UInt32.max), (2, 5, 1000), (4, 5, UInt32.max), (0x10, 5, UInt32.max), (0x20, 0, UInt32.max)] {
                value += [UInt8(tag), 0, UInt8(perm), 0] + withUnsafeBytes(of: UInt32(id).littleEndian, Array.init)
            }
            acl.extendedAttributes = ["system.posix_acl_access": value]
            let (path, _) = try writeAndCheck(directory([("small", small), ("large", large), ("acl", acl)]), dataEnd: firstData, in: dir)
            let smallList = try debugfs(path, "ea_list /small")
            #expect(smallList.contains("security.capability"))
            let largeList = try debugfs(path, "ea_list /large")
            #expect(largeList.contains("user.attribute-5"))
            #expect(try debugfs(path, "stat /large").contains("File ACL: ") && !(try debugfs(path, "stat /large").contains("File ACL: 0")))
            let aclList = try debugfs(path, "ea_list /acl")
            // The ext4 form mke2fs -d writes for the same ACL (version 1, short entries but for user:1000).
            #expect(aclList.contains("system.posix_acl_access (28) = 01 00 00 00 01 00 07 00 02 00 05 00 e8 03 00 00 04 00 05 00 10 00 05 00 20 00 00 00"))
        }
    }

    @Test func refusesWhatExt4CannotHold() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let odd = FileNode(kind: .regular, permissions: 0o644)
            odd.extendedAttributes = ["com.example.attr": [1]]
            #expect(throws: Ext4Error.self) { try Ext4Writer.write(root: directory([("f", odd)]), dataEnd: firstData, parameters: parameters, to: try FileSink(path: dir + "/a")) }
            let huge = FileNode(kind: .regular, permissions: 0o644)
            huge.extendedAttributes = ["user.big": [UInt8](repeating: 1, count: 5000)]
            #expect(throws: Ext4Error.self) { try Ext4Writer.write(root: directory([("f", huge)]), dataEnd: firstData, parameters: parameters, to: try FileSink(path: dir + "/b")) }
            let long = directory([(String(repeating: "n", count: 256), FileNode(kind: .fifo, permissions: 0o644))])
            #expect(throws: Ext4Error.self) { try Ext4Writer.write(root: long, dataEnd: firstData, parameters: parameters, to: try FileSink(path: dir + "/c")) }
        }
    }

    @Test func isDeterministic() throws {
        try TestSupport.withTemporaryDirectory { dir in
            func tree() -> FileNode {
                let link = FileNode(kind: .symbolicLink, permissions: 0o777)
                link.symlinkTarget = Array(String(repeating: "long/", count: 30).utf8)
                let device = FileNode(kind: .blockDevice, permissions: 0o660)
                device.deviceMajor = 259
                device.deviceMinor = 300
                return directory((0..<500).map { ("n\($0)", FileNode(kind: .fifo, permissions: 0o600)) } + [("l", link), ("d", device)])
            }
            let a = dir + "/a", b = dir + "/b"
            _ = try Ext4Writer.write(root: tree(), dataEnd: firstData, parameters: parameters, to: try FileSink(path: a))
            _ = try Ext4Writer.write(root: tree(), dataEnd: firstData, parameters: parameters, to: try FileSink(path: b))
            #expect(FileManager.default.contentsEqual(atPath: a, andPath: b))
            #expect(try TestSupport.fsckProblems(a) == nil)
            #expect(try debugfs(a, "stat /d").contains("Device major/minor number: 259:300"))
        }
    }
}
