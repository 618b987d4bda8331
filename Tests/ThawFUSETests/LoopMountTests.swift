import Foundation
import Testing
import ThawFUSE
import ThawTestSupport

@Suite("ext4 loop-mounted from a FUSE file")
struct LoopMountTests {
    @Test("the kernel mounts an ext4 image served over FUSE and reads its files intact")
    func loopMountsExt4Image() async throws {
        try await TestSupport.withTemporaryDirectory { temporary in
            let source = temporary + "/source"
            let files: [String: [UInt8]] = [
                "hello.txt": Array("hello from a FUSE-backed loop device\n".utf8),
                "etc/data.bin": PseudoRandom.bytes(count: 700_001, seed: 4),
                "etc/deep/small.bin": PseudoRandom.bytes(count: 4095, seed: 5),
            ]
            for (path, bytes) in files {
                let url = URL(fileURLWithPath: source + "/" + path)
                try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
                try Data(bytes).write(to: url)
            }
            let imagePath = temporary + "/image.ext4"
            try TestSupport.run("mke2fs", ["-q", "-d", source, "-t", "ext4", "-b", "4096", imagePath, "8M"])
            let image = try [UInt8](Data(contentsOf: URL(fileURLWithPath: imagePath)))

            let fileSystem = FUSEFileSystem()
            try fileSystem.add("image.ext4", MemoryFile(image))
            let directory = try MountHarness.makeDirectory("fuse", in: temporary)
            let ext4 = try MountHarness.makeDirectory("mnt", in: temporary)

            try await MountHarness.withMount(fileSystem, at: directory) { _ in
                let contents = try await TestSupport.onOwnThread { () throws -> [String: [UInt8]] in
                    let device = try TestSupport.run("losetup", ["-r", "-f", "--show", directory + "/image.ext4"])
                        .output.trimmingCharacters(in: .whitespacesAndNewlines)
                    // Undone in reverse: the ext4 mount, then the loop device; the FUSE mount after both.
                    defer { _ = try? TestSupport.run("losetup", ["-d", device], check: false) }
                    try TestSupport.run("mount", ["-o", "ro", "-t", "ext4", device, ext4])
                    defer { TestSupport.unmount(ext4) }
                    var contents: [String: [UInt8]] = [:]
                    for path in files.keys {
                        contents[path] = try [UInt8](Data(contentsOf: URL(fileURLWithPath: ext4 + "/" + path)))
                    }
                    return contents
                }
                #expect(contents == files)
                #expect(try MountHarness.mountedType(at: ext4) == nil)
            }
            #expect(try MountHarness.mountedType(at: directory) == nil)
        }
    }
}
