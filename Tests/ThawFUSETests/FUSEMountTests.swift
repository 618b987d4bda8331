import Foundation
import Testing
import ThawFUSE
import ThawTestSupport

@Suite("FUSE mounts")
struct FUSEMountTests {
    static let imageBytes = PseudoRandom.bytes(count: 5 << 20 + 123, seed: 1)
    static let notesBytes = Array("Thaw serves this file over FUSE.\n".utf8)
    static let writeRefusals: [POSIXErrorCode] = [.EROFS, .EACCES]

    @Test("serves exactly the added files, byte for byte, read-only, and leaves nothing behind")
    func servesFilesExactly() async throws {
        try await TestSupport.withTemporaryDirectory { temporary in
            let directory = try MountHarness.makeDirectory("fuse", in: temporary)
            let expectedCopy = temporary + "/expected.img"
            try Data(Self.imageBytes).write(to: URL(fileURLWithPath: expectedCopy))
            let fileSystem = FUSEFileSystem()
            try fileSystem.add("image.ext4", MemoryFile(Self.imageBytes))
            try fileSystem.add("notes.txt", MemoryFile(Self.notesBytes))

            try await MountHarness.withMount(fileSystem, at: directory) { mount in
                let image = directory + "/image.ext4"
                let size = Self.imageBytes.count
                #expect(mount.directory == directory)
                #expect(try MountHarness.mountedType(at: directory) == "fuse.thaw")
                #expect(try await MountHarness.listing(directory) == ["image.ext4", "notes.txt"])

                let attributes = try await MountHarness.attributes(image)
                #expect(attributes.size == size)
                #expect(attributes.type == .typeRegular)
                #expect(attributes.permissions == 0o444)

                #expect(try await MountHarness.contents(image) == Self.imageBytes)
                #expect(try await MountHarness.contents(directory + "/notes.txt") == Self.notesBytes)
                // Another process reads it too, and so does another user (`allow_other`), as a VMM
                // running as its own user would.
                #expect(try await MountHarness.status(of: "cmp", [image, expectedCopy]) == 0)
                let asNobody = ["--reuid=65534", "--regid=65534", "--clear-groups", "cmp", image, expectedCopy]
                #expect(try await MountHarness.status(of: "setpriv", asNobody) == 0)

                let blocks = (size + 4095) / 4096 + 1
                let statistics = try FileManager.default.attributesOfFileSystem(forPath: directory)
                #expect((statistics[.systemSize] as? NSNumber)?.intValue == blocks * 4096)

                let block = 128 * 1024
                let reads: [(offset: Int, length: Int)] = [
                    (block - 1, 3), (3 * block - 100, 300 * 1024), (4097, 12345),
                    (size - 10, 100), (size - 1, 1), (size, 10), (size + 4096, 10),
                ]
                for read in reads {
                    let expected = Array(Self.imageBytes[min(read.offset, size)..<min(read.offset + read.length, size)])
                    let bytes = try await MountHarness.pread(image, offset: read.offset, length: read.length).get()
                    #expect(bytes == expected, "pread of \(read.length) bytes at \(read.offset)")
                }

                for (path, flags) in [(image, O_WRONLY), (image, O_RDWR), (directory + "/new", O_WRONLY | O_CREAT)] {
                    let refusal = try await MountHarness.openError(path, flags: flags)
                    #expect(refusal.map(Self.writeRefusals.contains) == true, "open \(path) with flags \(flags): \(String(describing: refusal))")
                }
                #expect(try await MountHarness.openError(directory + "/missing", flags: O_RDONLY) == .ENOENT)
            }
            #expect(try MountHarness.mountedType(at: directory) == nil)
            #expect(try FileManager.default.contentsOfDirectory(atPath: directory).isEmpty)
        }
    }

    @Test("serves concurrent reads from many threads correctly")
    func servesConcurrentReads() async throws {
        try await TestSupport.withTemporaryDirectory { temporary in
            let directory = try MountHarness.makeDirectory("fuse", in: temporary)
            let fileSystem = FUSEFileSystem()
            try fileSystem.add("image.ext4", MemoryFile(Self.imageBytes))
            let image = directory + "/image.ext4"
            let (reads, mismatches) = try await MountHarness.withMount(fileSystem, at: directory) { _ in
                try await withThrowingTaskGroup(of: (Int, Int).self) { group in
                    for reader in 0..<8 {
                        group.addTask {
                            var offset = reader * 77_777
                            var mismatches = 0
                            for _ in 0..<40 {
                                let length = 1 + (offset * 31) % (300 * 1024)
                                let end = min(offset + length, Self.imageBytes.count)
                                let bytes = try await MountHarness.pread(image, offset: offset, length: length).get()
                                if bytes != Array(Self.imageBytes[offset..<end]) { mismatches += 1 }
                                offset = (offset + 130_001) % Self.imageBytes.count
                            }
                            return (40, mismatches)
                        }
                    }
                    return try await group.reduce((0, 0)) { ($0.0 + $1.0, $0.1 + $1.1) }
                }
            }
            #expect(reads == 320)
            #expect(mismatches == 0)
        }
    }

    @Test("a read that throws fails with EIO, and the mount goes on serving")
    func failingReadGivesEIO() async throws {
        try await TestSupport.withTemporaryDirectory { temporary in
            let directory = try MountHarness.makeDirectory("fuse", in: temporary)
            let fileSystem = FUSEFileSystem()
            try fileSystem.add("broken.img", FailingFile(size: 1 << 20))
            try fileSystem.add("notes.txt", MemoryFile(Self.notesBytes))
            try await MountHarness.withMount(fileSystem, at: directory) { _ in
                let broken = try await MountHarness.pread(directory + "/broken.img", offset: 0, length: 4096)
                #expect(throws: POSIXError(.EIO)) { try broken.get() }
                let again = try await MountHarness.pread(directory + "/broken.img", offset: 512 * 1024, length: 10)
                #expect(throws: POSIXError(.EIO)) { try again.get() }
                #expect(try await MountHarness.pread(directory + "/notes.txt", offset: 0, length: 4096).get() == Self.notesBytes)
            }
        }
    }

    @Test("files added and removed while mounted appear and go; open files keep their bytes")
    func filesComeAndGoWhileMounted() async throws {
        try await TestSupport.withTemporaryDirectory { temporary in
            let directory = try MountHarness.makeDirectory("fuse", in: temporary)
            let fileSystem = FUSEFileSystem()
            let first = PseudoRandom.bytes(count: 300_000, seed: 2)
            let second = PseudoRandom.bytes(count: 200_000, seed: 3)
            let path = directory + "/disk.img"
            try await MountHarness.withMount(fileSystem, at: directory) { _ in
                #expect(try await MountHarness.listing(directory).isEmpty)

                try fileSystem.add("disk.img", MemoryFile(first))
                try fileSystem.add("other.img", MemoryFile(second))
                #expect(try await MountHarness.listing(directory) == ["disk.img", "other.img"])
                #expect(try await MountHarness.contents(path) == first)
                let held = try await MountHarness.openForReading(path)
                defer { close(held) }

                // Replaced under the same name: new opens read the new bytes, not pages cached
                // from the old ones; the descriptor opened before still reads the old file. The
                // kernel keeps one inode per name, so once it has seen the new, shorter size it
                // ends the old descriptor's reads there too: this reads below both sizes.
                try fileSystem.add("disk.img", MemoryFile(second))
                #expect(try await MountHarness.contents(path) == second)
                #expect(try await MountHarness.pread(descriptor: held, offset: 100_000, length: 100_000).get()
                    == Array(first[100_000..<200_000]))
                #expect(try await MountHarness.contents(path) == second)

                fileSystem.remove("disk.img")
                #expect(fileSystem.names == ["other.img"])
                #expect(try await MountHarness.listing(directory) == ["other.img"])
                #expect(try await MountHarness.openError(path, flags: O_RDONLY) == .ENOENT)
                #expect(try await MountHarness.pread(descriptor: held, offset: 0, length: 1000).get() == Array(first[..<1000]))
            }
        }
    }

    @Test("unmounting with a file still open detaches the mount and ends its loop")
    func busyUnmountDetaches() async throws {
        try await TestSupport.withTemporaryDirectory { temporary in
            let directory = try MountHarness.makeDirectory("fuse", in: temporary)
            let fileSystem = FUSEFileSystem()
            try fileSystem.add("image.ext4", MemoryFile(Self.imageBytes))
            let mount = try await FUSEMount.mount(fileSystem, at: directory)
            let descriptor: Int32
            do {
                descriptor = try await MountHarness.openForReading(directory + "/image.ext4")
            } catch {
                await mount.unmount()
                throw error
            }
            defer { close(descriptor) }
            let early = try await MountHarness.pread(descriptor: descriptor, offset: 0, length: 4096)
            #expect(try early.get() == Array(Self.imageBytes[..<4096]))

            await mount.unmount()
            #expect(try MountHarness.mountedType(at: directory) == nil)
            // Bytes not yet cached can no longer be fetched.
            let late = try await MountHarness.pread(descriptor: descriptor, offset: 4 << 20, length: 4096)
            #expect(throws: POSIXError.self) { try late.get() }
            await mount.unmount()
        }
    }

    @Test("unmount is idempotent and may be called concurrently")
    func unmountIsIdempotent() async throws {
        try await TestSupport.withTemporaryDirectory { temporary in
            let directory = try MountHarness.makeDirectory("fuse", in: temporary)
            let mount = try await FUSEMount.mount(FUSEFileSystem(), at: directory)
            async let first: Void = mount.unmount()
            async let second: Void = mount.unmount()
            _ = await (first, second)
            await mount.unmount()
            #expect(try MountHarness.mountedType(at: directory) == nil)
            // The directory can take a new mount.
            let again = try await FUSEMount.mount(FUSEFileSystem(), at: directory)
            #expect(try MountHarness.mountedType(at: directory) == "fuse.thaw")
            await again.unmount()
            #expect(try MountHarness.mountedType(at: directory) == nil)
        }
    }

    @Test("mounting where it cannot go throws an error naming the path")
    func refusesBadDirectories() async throws {
        try await TestSupport.withTemporaryDirectory { temporary in
            let missing = temporary + "/missing"
            let missingError = await #expect(throws: FUSEError.self) { try await FUSEMount.mount(FUSEFileSystem(), at: missing) }
            #expect(missingError?.kind == .directoryMissing)
            #expect(missingError?.path == missing)
            #expect(missingError?.description.contains(missing) == true)

            let file = temporary + "/file"
            try Data("x".utf8).write(to: URL(fileURLWithPath: file))
            let notADirectory = await #expect(throws: FUSEError.self) { try await FUSEMount.mount(FUSEFileSystem(), at: file) }
            #expect(notADirectory?.kind == .notADirectory)
            #expect(notADirectory?.path == file)

            let directory = try MountHarness.makeDirectory("fuse", in: temporary)
            let mount = try await FUSEMount.mount(FUSEFileSystem(), at: directory)
            let twice = await #expect(throws: FUSEError.self) { try await FUSEMount.mount(FUSEFileSystem(), at: directory) }
            #expect(twice?.kind == .alreadyMounted)
            #expect(twice?.path == directory)
            await mount.unmount()
            #expect(try MountHarness.mountedType(at: directory) == nil)
        }
    }
}
