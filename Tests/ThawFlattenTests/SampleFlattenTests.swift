import Foundation
import Glibc
import Testing
import ThawExt4
import ThawFlatten
import ThawImage
import ThawSample
import ThawTestSupport

func flatten(_ reference: ImageReference, to output: String, chunkSize: UInt64 = Flattener.defaultChunkSize,
             platform: Platform = .linuxAMD64) throws -> FlattenSummary {
    try Flattener(chunkSize: chunkSize).flatten(try Image.open(reference, platform: platform), to: output)
}

/// `flatten` on a thread of its own: a corpus image takes many seconds in a debug build, and
/// the suite's other tests need the two threads of Swift's concurrency pool meanwhile.
func flattenOffPool(_ reference: ImageReference, to output: String) async throws -> FlattenSummary {
    try await TestSupport.onOwnThread { try flatten(reference, to: output) }
}

/// An extended attribute read by Python's os.getxattr (Glibc's module does not export it).
func xattrHex(_ path: String, _ name: String) throws -> String {
    try TestSupport.run("python3", ["-c", "import os,sys; print(os.getxattr(sys.argv[1], sys.argv[2], follow_symlinks=False).hex())", path, name])
        .output.trimmingCharacters(in: .whitespacesAndNewlines)
}

/// glibc's makedev: 12-bit major and 20-bit minor split across the word.
func makeDevice(_ major: UInt64, _ minor: UInt64) -> UInt64 {
    ((major & 0xfff) << 8) | (minor & 0xff) | ((minor & ~0xff) << 12) | ((major & ~0xfff) << 32)
}

func lstatOf(_ path: String) -> stat {
    var info = stat()
    lstat(path, &info)
    return info
}

/// Flattens Thaw's own generated sample (gzip, zstd and plain layers) and checks the result
/// through a kernel loop mount.
@Suite(.serialized) struct SampleFlattenTests {
    @Test func flattensTheSampleIntoACleanFilesystemTheKernelReads() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let reference = try SampleImage.write(to: dir + "/oci", tag: "s")
            let summary = try flatten(reference, to: dir + "/s.ext4")
            #expect(try TestSupport.fsckProblems(dir + "/s.ext4") == nil)
            #expect(summary.regions.count == 3)
            for region in summary.regions { #expect(region.offset % summary.chunkSize == 0) }
            #expect(summary.filesystem.metadataStart * 4096 >= summary.regions.last!.offset + summary.regions.last!.length)

            try TestSupport.withLoopMount(dir + "/s.ext4", at: dir + "/mnt") {
                let root = dir + "/mnt"
                let fm = FileManager.default
                // Whiteout (layer 3 deletes etc/empty) and opaque directory (usr/lib holds only layer 3's file).
                #expect(!fm.fileExists(atPath: root + "/etc/empty"))
                let library = try fm.contentsOfDirectory(atPath: root + "/usr/lib")
                #expect(library == ["libsample.so.2"])
                #expect(fm.contents(atPath: root + "/etc/os-release") == Data("NAME=Thaw sample\nID=thaw\n".utf8))
                // Hard link, setuid, capability, device, FIFO, long symlink, sticky bit.
                #expect(lstatOf(root + "/bin/handler").st_ino == lstatOf(root + "/usr/bin/handler").st_ino)
                #expect(lstatOf(root + "/bin/handler").st_nlink == 2)
                #expect(lstatOf(root + "/usr/bin/ping").st_mode & 0o7777 == 0o4755)
                let capability = try xattrHex(root + "/usr/bin/ping", "security.capability")
                #expect(capability == "0000000200040000000000000000000000000000")
                let null = lstatOf(root + "/dev/null")
                #expect(null.st_mode & S_IFMT == S_IFCHR && null.st_rdev == makeDevice(1, 3))
                #expect(lstatOf(root + "/run/events").st_mode & S_IFMT == S_IFIFO)
                let target = try fm.destinationOfSymbolicLink(atPath: root + "/app/current")
                #expect(target.count == 90)
                #expect(lstatOf(root + "/tmp").st_mode & 0o7777 == 0o1777)
                let noise = fm.contents(atPath: root + "/app/data/model.bin")
                #expect(noise?.count == 3_000_000)
            }
        }
    }

    @Test func isByteIdenticalAcrossRunsAndDirectories() throws {
        try TestSupport.withTemporaryDirectory { dir in
            try SampleImage.write(to: dir + "/one/oci", tag: "s")
            try SampleImage.write(to: dir + "/two/oci", tag: "s")
            _ = try flatten(.ociLayout(path: dir + "/one/oci", tag: "s"), to: dir + "/one/s.ext4")
            _ = try flatten(.ociLayout(path: dir + "/two/oci", tag: "s"), to: dir + "/two/s.ext4")
            #expect(FileManager.default.contentsEqual(atPath: dir + "/one/s.ext4", andPath: dir + "/two/s.ext4"))
        }
    }

    @Test func imagesSharingLayersShareThoseRegionsChunks() throws {
        try TestSupport.withTemporaryDirectory { dir in
            try SampleImage.write(to: dir + "/oci", tag: "a", variant: 1)
            try SampleImage.write(to: dir + "/oci", tag: "b", variant: 2)
            let a = try flatten(.ociLayout(path: dir + "/oci", tag: "a"), to: dir + "/a.ext4")
            let b = try flatten(.ociLayout(path: dir + "/oci", tag: "b"), to: dir + "/b.ext4")
            let chunk = a.chunkSize
            let censusA = try ChunkCensus(path: dir + "/a.ext4", chunkSize: chunk)
            let censusB = try ChunkCensus(path: dir + "/b.ext4", chunkSize: chunk)
            // Every chunk of the two shared layers' regions is common to both images.
            let sharedRegionChunks = a.regions.prefix(2).reduce(0) { $0 + Int(($1.length + chunk - 1) / chunk) }
            #expect(a.regions.prefix(2) == b.regions.prefix(2))
            #expect(censusA.shared(with: censusB) >= sharedRegionChunks)
            #expect(censusA.shared(with: censusB) < censusA.chunks.count, "the top layers differ")
        }
    }

    @Test func chunkSizeIsAParameter() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let reference = try SampleImage.write(to: dir + "/oci")
            let summary = try flatten(reference, to: dir + "/s.ext4", chunkSize: 64 * 1024)
            for region in summary.regions { #expect(region.offset % (64 * 1024) == 0) }
            #expect(summary.imageSize % (64 * 1024) == 0)
            #expect(try TestSupport.fsckProblems(dir + "/s.ext4") == nil)
            #expect(throws: FlattenError.self) { try flatten(reference, to: dir + "/x.ext4", chunkSize: 3000) }
        }
    }

    @Test func aRefusedImageLeavesTheDestinationUntouched() throws {
        try TestSupport.withTemporaryDirectory { dir in
            try SampleImage.write(to: dir + "/oci")
            let image = try Image.open(.ociLayout(path: dir + "/oci", tag: nil))
            // Corrupt the last layer so the failure comes after data was written.
            let blob = image.layers[2].path
            var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: blob)))
            bytes[bytes.count - 2000] ^= 0xff
            try Data(bytes).write(to: URL(fileURLWithPath: blob))
            try Data("precious".utf8).write(to: URL(fileURLWithPath: dir + "/out.ext4"))
            do {
                _ = try Flattener().flatten(image, to: dir + "/out.ext4")
                Issue.record("corrupt image flattened")
            } catch let error as FlattenError {
                #expect(error.layer == image.layers[2].label)
            }
            #expect(FileManager.default.contents(atPath: dir + "/out.ext4") == Data("precious".utf8))
            let left = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
            #expect(left == ["oci", "out.ext4"])
        }
    }
}
