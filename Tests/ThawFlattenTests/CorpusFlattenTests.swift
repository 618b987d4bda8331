import Foundation
import Testing
import ThawFlatten
import ThawImage
import ThawTestSupport

/// The same checks on real images built from Debian packages (scripts/corpus.sh): e2fsck is
/// clean, and the tree the kernel reads from a loop mount equals `umoci unpack` of the image.
@Suite(.serialized) struct CorpusFlattenTests {
    static let tags = ["base", "py", "perl", "web", "slim"]
    var layout: String { TestSupport.corpus + "/oci" }

    @Test(arguments: tags)
    func matchesUmociUnpack(tag: String) async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let output = dir + "/\(tag).ext4"
            let summary = try await flattenOffPool(.ociLayout(path: layout, tag: tag), to: output)
            #expect(summary.layerCount >= 1)
            try await expectMatchesUmociOffPool(image: output, layout: layout, tag: tag, workingIn: dir)
        }
    }

    @Test func aDockerArchiveFlattensLikeItsOCILayout() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            _ = try await flattenOffPool(.ociLayout(path: layout, tag: "py"), to: dir + "/oci.ext4")
            _ = try await flattenOffPool(.dockerArchive(path: TestSupport.corpus + "/docker/py.tar", name: nil), to: dir + "/docker.ext4")
            #expect(FileManager.default.contentsEqual(atPath: dir + "/oci.ext4", andPath: dir + "/docker.ext4"))
        }
    }

    @Test func imagesOnOneBaseShareEveryChunkOfTheBaseRegion() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            var censuses: [String: ChunkCensus] = [:]
            var summaries: [String: FlattenSummary] = [:]
            for tag in ["base", "py", "web"] {
                let summary = try await flattenOffPool(.ociLayout(path: layout, tag: tag), to: dir + "/\(tag).ext4")
                summaries[tag] = summary
                censuses[tag] = try ChunkCensus(path: dir + "/\(tag).ext4", chunkSize: summary.chunkSize)
            }
            let base = summaries["base"]!.regions[0]
            let chunk = summaries["base"]!.chunkSize
            let regionEnd = (base.offset + base.length + chunk - 1) / chunk * chunk
            let baseRegion = try ChunkCensus(path: dir + "/base.ext4", chunkSize: chunk, range: base.offset..<regionEnd)
            #expect(baseRegion.chunks.count > 100)
            for tag in ["py", "web"] {
                #expect(summaries[tag]!.regions[0] == base)
                #expect(baseRegion.chunks.isSubset(of: censuses[tag]!.chunks), "\(tag) holds every chunk of the base region")
            }
        }
    }
}
