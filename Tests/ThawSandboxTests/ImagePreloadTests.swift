import Foundation
import Glibc
import Testing
@testable import ThawSandbox
import ThawSandboxCore
import ThawTestSupport

/// What a sandbox preloads from a relaid image's record, and that the init's preloader puts it
/// where ext4 looks: file content in the file's cache, everything else in the device's.
@Suite(.serialized) struct ImagePreloadTests {
    @Test func runsKeepTheRecordsOrderAndTellFileContentByTheHotRegion() {
        // The hot region starts at block 100: inode 12's blocks 0–3, inode 13's 5–6, inode 12's 4.
        let hot: [(inode: UInt32, logical: UInt32)] = [(12, 0), (12, 1), (12, 2), (12, 3), (13, 5), (13, 6), (12, 4)]
        let recorded: [(first: UInt64, count: UInt64)] = [(0, 2), (2, 1), (100, 5), (50, 1), (105, 2), (51, 1)]
        let runs = ImagePreload.runs(recorded: recorded, hotStart: 100, hotBlocks: hot)
        #expect(runs == [
            PreloadRun(block: 0, count: 3),  // two record runs that follow on: one device run
            PreloadRun(block: 100, count: 4, inode: 12, logical: 0),
            PreloadRun(block: 104, count: 1, inode: 13, logical: 5),
            PreloadRun(block: 50, count: 1),
            // Next on the device after block 104, but read after block 50: a run of its own.
            PreloadRun(block: 105, count: 1, inode: 13, logical: 6),
            PreloadRun(block: 106, count: 1, inode: 12, logical: 4),
            PreloadRun(block: 51, count: 1),
        ])
        // Blocks side by side on the device but not in the file are two runs.
        #expect(ImagePreload.runs(recorded: [(10, 2)], hotStart: 10, hotBlocks: [(7, 0), (7, 2)])
            == [PreloadRun(block: 10, count: 1, inode: 7, logical: 0), PreloadRun(block: 11, count: 1, inode: 7, logical: 2)])
        #expect(ImagePreload.runs(recorded: [], hotStart: 10, hotBlocks: [(7, 0)]).isEmpty)
        // A record run across the hot region's end: content, then a device run right after it.
        #expect(ImagePreload.runs(recorded: [(105, 3)], hotStart: 100, hotBlocks: hot)
            == [PreloadRun(block: 105, count: 1, inode: 13, logical: 6), PreloadRun(block: 106, count: 1, inode: 12, logical: 4),
                PreloadRun(block: 107, count: 1)])
        // A file run after a device run starts anew even where the file goes on.
        #expect(ImagePreload.runs(recorded: [(100, 1), (0, 1), (101, 1)], hotStart: 100, hotBlocks: hot)
            == [PreloadRun(block: 100, count: 1, inode: 12, logical: 0), PreloadRun(block: 0, count: 1),
                PreloadRun(block: 101, count: 1, inode: 12, logical: 1)])
        // Logical blocks at the top of their range join without overflowing.
        #expect(ImagePreload.runs(recorded: [(10, 2)], hotStart: 10, hotBlocks: [(7, UInt32.max - 1), (7, UInt32.max)])
            == [PreloadRun(block: 10, count: 2, inode: 7, logical: UInt32.max - 1)])
    }

    @Test func aPlanCarriesItsPreloadOnItsLine() throws {
        var plan = SandboxPlan(imageFile: "/i", workDirectory: "/w", tmpSize: 1 << 20, network: .none,
                               function: FunctionSpec(arguments: ["/bin/true"], environment: []))
        plan.preload = PreloadRuns([PreloadRun(block: 9, count: 2, inode: 12, logical: 0), PreloadRun(block: 1 << 40, count: 1),
                                    PreloadRun(block: 3, count: 7, inode: 13, logical: 5)])
        let line = try plan.encodedLine()
        let text = String(decoding: line, as: UTF8.self)
        // 20 bytes a run, as one base64 string.
        #expect(text.contains(#""preload":""#) && !text.contains("block"), "\(text)")
        var pipe: [Int32] = [0, 0]
        #expect(Glibc.pipe(&pipe) == 0)
        _ = line.withUnsafeBytes { write(pipe[1], $0.baseAddress, $0.count) }
        close(pipe[1])
        #expect(try SandboxPlan.receive(from: pipe[0]) == plan)
        // Not whole records: the plan is refused, naming why.
        let broken = text.replacingOccurrences(of: #""preload":""#, with: #""preload":"AAAA"#)
        let error = #expect(throws: DecodingError.self) { try JSONDecoder().decode(SandboxPlan.self, from: Data(broken.dropLast().utf8)) }
        #expect("\(String(describing: error))".contains("20-byte records"), "\(String(describing: error))")
    }

    @Test func thePreloaderFillsTheCachesExt4ReadsFrom() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let tree = dir + "/tree"
            try FileManager.default.createDirectory(atPath: tree, withIntermediateDirectories: true)
            var generator = SeededGenerator(seed: 7)
            try Data(generator.bytes(256 * 1024)).write(to: URL(fileURLWithPath: tree + "/content.bin"))
            try Data(generator.bytes(64 * 1024)).write(to: URL(fileURLWithPath: tree + "/other.bin"))
            try FileManager.default.createDirectory(atPath: tree + "/sub", withIntermediateDirectories: true)
            let image = dir + "/image.ext4"
            try TestSupport.run("mkfs.ext4", ["-q", "-F", "-b", "4096", "-d", tree, image, "8M"])
            // Where other.bin's first block is, for the device's runs, and content.bin's, whose
            // blocks the device's cache must not get.
            let otherBlock = try Self.firstBlock(of: "/other.bin", in: image)
            let contentBlock = try Self.firstBlock(of: "/content.bin", in: image)

            let loop = try LoopDevice.attach(image)
            let mountPoint = dir + "/mount"
            try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
            do {
                try SystemCalls.mount(loop.path, on: mountPoint, type: "ext4", flags: [.readOnly])
            } catch {
                loop.closeDescriptor()
                throw error
            }
            loop.closeDescriptor()
            defer { TestSupport.unmount(mountPoint) }
            var status = stat()
            #expect(stat(mountPoint + "/content.bin", &status) == 0)
            let inode = UInt32(status.st_ino)
            let file = mountPoint + "/content.bin"
            #expect(try Self.residentPages(file, pages: 64) == 0, "a fresh mount caches nothing of the file")
            #expect(try Self.residentPages(loop.path, from: otherBlock, pages: 4) == 0)

            // The file's content by inode; other.bin's blocks through the device; blocks named by
            // an inode that does not exist are skipped.
            let runs = [
                PreloadRun(block: 0, count: 64, inode: inode, logical: 0),
                PreloadRun(block: otherBlock, count: 2),
                PreloadRun(block: otherBlock + 2, count: 2, inode: 999_999, logical: 0),
            ]
            // The advice is best effort: under memory pressure the kernel drops read-ahead pages
            // it cannot allocate without reclaim, so a partial load is asked for again (at most
            // three times). A route that is wrong loads nothing, however often it is asked.
            var filePages = 0
            var devicePages = 0
            for _ in 0..<3 {
                #expect(ImagePreloader.start(mount: mountPoint, device: loop.path, runs: runs))
                for _ in 0..<40 {
                    filePages = try Self.residentPages(file, pages: 64)
                    devicePages = try Self.residentPages(loop.path, from: otherBlock, pages: 2)
                    if filePages == 64 && devicePages == 2 { break }
                    try await Task.sleep(for: .milliseconds(50))
                }
                if filePages == 64 && devicePages == 2 { break }
            }
            #expect(filePages == 64, "the file's content was loaded through the file")
            #expect(try Self.residentPages(loop.path, from: contentBlock, pages: 64) == 0,
                    "the file's content was not loaded through the device")
            #expect(devicePages == 2, "the other blocks were loaded through the device")
            // The run naming an inode that does not exist was skipped: ext4 would not read a
            // file's content from the device's cache.
            #expect(try Self.residentPages(loop.path, from: otherBlock + 2, pages: 2) == 0)
            #expect(!ImagePreloader.start(mount: mountPoint, device: loop.path, runs: []))

            // Routing: files open within the limit and close after their last run; a directory
            // goes through the device; an inode that does not exist is skipped.
            func inodeNumber(_ path: String) -> UInt32 {
                var status = stat()
                return stat(mountPoint + "/" + path, &status) == 0 ? UInt32(status.st_ino) : 0
            }
            let other = inodeNumber("other.bin"), sub = inodeNumber("sub")
            let mountDescriptor = open(mountPoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            #expect(mountDescriptor >= 0)
            defer { close(mountDescriptor) }
            let routed = [PreloadRun(block: 0, count: 1, inode: inode, logical: 0), PreloadRun(block: 0, count: 1, inode: other, logical: 0),
                          PreloadRun(block: 0, count: 1, inode: inode, logical: 1)]
            var files = ImagePreloader.Files(mount: mountDescriptor, runs: routed, limit: 1)
            func opens(_ route: ImagePreloader.Route) -> Bool { if case .file = route { true } else { false } }
            #expect(opens(files.route(of: inode)))
            #expect(files.route(of: other) == .skip, "one file open at most")
            files.done(with: inode, run: 0)
            #expect(files.route(of: other) == .skip, "content.bin stays open for its later run")
            files.done(with: inode, run: 2)
            #expect(opens(files.route(of: other)), "content.bin closed after its last run")
            files.done(with: other, run: 1)
            #expect(files.route(of: sub) == .device)
            #expect(files.route(of: 999_999) == .skip)
            files.closeAll()
        }
    }

    /// Where `path`'s first block is in `image`, as debugfs maps it.
    static func firstBlock(of path: String, in image: String) throws -> UInt64 {
        let mapped = try TestSupport.run("debugfs", ["-R", "bmap \(path) 0", image]).output
        return try #require(mapped.split(separator: "\n").compactMap { UInt64($0.trimmingCharacters(in: .whitespaces)) }.last,
                            "debugfs said \(mapped)")
    }

    /// How many of `pages` 4 KiB pages of `path` from page `from` are in the page cache
    /// (mincore over a shared mapping, which reads nothing).
    static func residentPages(_ path: String, from: UInt64 = 0, pages: Int) throws -> Int {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        defer { close(descriptor) }
        let length = pages * 4096
        guard let mapping = mmap(nil, length, PROT_READ, MAP_SHARED, descriptor, off_t(from * 4096)), mapping != MAP_FAILED else {
            throw POSIXError(.init(rawValue: errno) ?? .EIO)
        }
        defer { munmap(mapping, length) }
        var vector = [UInt8](repeating: 0, count: pages)
        guard mincore(mapping, length, &vector) == 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        return vector.filter { $0 & 1 == 1 }.count
    }
}
