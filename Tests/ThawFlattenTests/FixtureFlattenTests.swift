import Foundation
import Testing
import ThawFlatten
import ThawImage
import ThawTestSupport

/// Images written by Python's tarfile (Tests/Fixtures/make-image.py): every kind of entry,
/// whiteouts and opaque directories across layers, GNU and pax headers; compared with
/// `umoci unpack` through a loop mount and debugfs.
@Suite(.serialized) struct FixtureFlattenTests {
    /// Flattens fixture `variant` and checks it against umoci.
    func checkAgainstUmoci(_ variant: String, in dir: String, compare: [String] = ["--mtime"]) throws -> FlattenSummary {
        let layout = dir + "/oci"
        try Fixtures.make(variant, in: layout)
        let output = dir + "/\(variant).ext4"
        let summary = try flatten(.ociLayout(path: layout, tag: variant), to: output)
        try expectMatchesUmoci(image: output, layout: layout, tag: variant, workingIn: dir, mountOptions: compare)
        return summary
    }

    @Test func everyKindOfEntryAcrossLayersMatchesUmoci() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let summary = try checkAgainstUmoci("full", in: dir)
            #expect(summary.layerCount >= 4)
        }
    }

    @Test func aDirectoryOf50000EntriesMatchesUmoci() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let summary = try checkAgainstUmoci("many", in: dir)
            #expect(summary.regularFiles >= 50_000)
        }
    }

    @Test func aFileOver4GiBMatchesUmoci() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let summary = try checkAgainstUmoci("huge", in: dir, compare: [])
            #expect(summary.fileBytes > 4 << 30)
        }
    }

    @Test func theSameImageGivesTheSameBytesWhateverTheCompressionOrTransport() throws {
        try TestSupport.withTemporaryDirectory { dir in
            try Fixtures.make("full", in: dir + "/gzip", tag: "full", compression: "gzip", dockerArchive: dir + "/full.tar")
            try Fixtures.make("full", in: dir + "/zstd", tag: "full", compression: "zstd")
            try Fixtures.make("full", in: dir + "/mixed", tag: "full", compression: "mixed")
            try TestSupport.run("skopeo", ["copy", "-q", "oci:\(dir)/gzip:full", "docker-archive:\(dir)/skopeo.tar:thaw/full:latest"])
            _ = try flatten(.ociLayout(path: dir + "/gzip", tag: "full"), to: dir + "/gzip.ext4")
            for other in ["zstd", "mixed"] {
                _ = try flatten(.ociLayout(path: dir + "/\(other)", tag: "full"), to: dir + "/\(other).ext4")
                #expect(FileManager.default.contentsEqual(atPath: dir + "/gzip.ext4", andPath: dir + "/\(other).ext4"), "\(other)")
            }
            for archive in ["full.tar", "skopeo.tar"] {
                _ = try flatten(.dockerArchive(path: dir + "/" + archive, name: nil), to: dir + "/\(archive).ext4")
                #expect(FileManager.default.contentsEqual(atPath: dir + "/gzip.ext4", andPath: dir + "/\(archive).ext4"), "\(archive)")
            }
        }
    }

    @Test func twoFlattensInDifferentDirectoriesAreIdentical() throws {
        try TestSupport.withTemporaryDirectory { dir in
            try Fixtures.make("full", in: dir + "/a/oci")
            try Fixtures.make("full", in: dir + "/b/oci")
            _ = try flatten(.ociLayout(path: dir + "/a/oci", tag: "full"), to: dir + "/a/out.ext4")
            _ = try flatten(.ociLayout(path: dir + "/b/oci", tag: "full"), to: dir + "/b/out.ext4")
            #expect(FileManager.default.contentsEqual(atPath: dir + "/a/out.ext4", andPath: dir + "/b/out.ext4"))
        }
    }

    @Test func imagesSharingTheirFirstLayersShareEveryChunkOfThoseRegions() throws {
        try TestSupport.withTemporaryDirectory { dir in
            try Fixtures.make("shared-a", in: dir + "/oci")
            try Fixtures.make("shared-b", in: dir + "/oci")
            let a = try flatten(.ociLayout(path: dir + "/oci", tag: "shared-a"), to: dir + "/a.ext4")
            let b = try flatten(.ociLayout(path: dir + "/oci", tag: "shared-b"), to: dir + "/b.ext4")
            let chunk = a.chunkSize
            #expect(Array(a.regions.prefix(2)) == Array(b.regions.prefix(2)))
            let end = (a.regions[1].offset + a.regions[1].length + chunk - 1) / chunk * chunk
            let shared = try ChunkCensus(path: dir + "/a.ext4", chunkSize: chunk, range: a.regions[0].offset..<end)
            let censusB = try ChunkCensus(path: dir + "/b.ext4", chunkSize: chunk)
            #expect(shared.chunks.count >= 4)
            #expect(shared.chunks.isSubset(of: censusB.chunks))
            let censusA = try ChunkCensus(path: dir + "/a.ext4", chunkSize: chunk)
            #expect(censusA.shared(with: censusB) < censusA.chunks.count)
        }
    }

    @Test func choosesThePlatformFromAMultiPlatformIndex() throws {
        try TestSupport.withTemporaryDirectory { dir in
            try Fixtures.make("multiarch", in: dir + "/oci")
            for (platform, expected) in [("linux/amd64", "amd64"), ("linux/arm64", "arm64")] {
                let output = dir + "/\(expected).ext4"
                _ = try flatten(.ociLayout(path: dir + "/oci", tag: "multiarch"), to: output, platform: try Platform(parsing: platform))
                let content = try TestSupport.run("debugfs", ["-R", "cat /arch", output]).output
                #expect(content.contains(expected))
            }
            #expect(throws: ImageError.self) {
                try flatten(.ociLayout(path: dir + "/oci", tag: "multiarch"), to: dir + "/x.ext4", platform: try Platform(parsing: "linux/s390x"))
            }
        }
    }

    /// Each hostile image is refused with an error naming its layer (and entry, where there is
    /// one), and leaves nothing at the destination.
    @Test(arguments: [
        ("hostile-dotdot", "..", true),
        ("hostile-absolute", "absolute", true),
        ("hostile-hardlink-missing", "hard link", true),
        ("hostile-hardlink-outside", "..", true),
        ("hostile-truncated", "stream ends", true),
        ("hostile-blob-digest", "digest", false),
        ("hostile-diffid", "digest", false),
        ("hostile-media-type", "media type", false),
        ("hostile-size-field", "size", true),
    ])
    func refusesHostileImages(variant: String, mentions: String, namesEntry: Bool) throws {
        try TestSupport.withTemporaryDirectory { dir in
            try Fixtures.make(variant, in: dir + "/oci")
            do {
                _ = try flatten(.ociLayout(path: dir + "/oci", tag: variant), to: dir + "/out.ext4")
                Issue.record("\(variant) was accepted")
            } catch let error as FlattenError {
                #expect(error.layer?.hasPrefix("layer 2") == true, "\(variant): \(error)")
                if namesEntry { #expect(error.entry != nil, "\(variant): \(error)") }
                #expect(error.description.contains(mentions), "\(variant): \(error)")
            } catch let error as ImageError {
                #expect(error.description.contains(mentions), "\(variant): \(error)")
                #expect(error.layer?.hasPrefix("layer 2") == true || variant == "hostile-media-type", "\(variant): \(error)")
                if variant == "hostile-media-type" { #expect(error.description.contains("layer 2")) }
            }
            let left = try FileManager.default.contentsOfDirectory(atPath: dir)
            #expect(left == ["oci"], "\(variant) left \(left)")
        }
    }
}
