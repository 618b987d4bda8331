import Foundation
import Testing
import ThawFlatten
import ThawImage
import ThawPush
import ThawSeal
import ThawStore
import ThawTestSupport

/// A relayout from a recorded start: the image reads exactly as before, layer regions keep
/// their chunks, the hot region holds what was read, and the new manifest has its own record.
@Suite struct RelayoutTests {
    typealias Setup = PushPullTests.Setup

    /// A record as an agent would save it: a few blocks of every layer region, then the whole
    /// metadata tail (directories among it), in that order.
    static func record(for report: PushReport) -> AccessRecord {
        var blocks: [AccessRecord.BlockRun] = []
        for layer in report.header.layers where layer.length > 0 {
            let first = UInt32(layer.offset / 4096)
            let count = UInt32(layer.length / 4096)
            blocks.append(.init(first: first, count: min(3, count)))
            var next: UInt32 = 5
            while next < count {
                blocks.append(.init(first: first + next, count: 1))
                next += 7
            }
        }
        let tail = report.flatten.filesystem
        blocks.append(.init(first: UInt32(tail.metadataStart), count: UInt32(tail.metadataBlocks)))
        let chunkBlocks = UInt32(report.header.chunkSize / 4096)
        var chunks: [UInt32] = []
        for run in blocks where !chunks.contains(run.first / chunkBlocks) { chunks.append(run.first / chunkBlocks) }
        return AccessRecord(manifestID: report.manifestID, chunkCount: report.header.chunkCount, chunks: chunks, blocks: blocks)
    }

    func rdump(_ image: String, into dir: String) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try TestSupport.run("debugfs", ["-R", "rdump / \(dir)", image])
    }

    @Test func relayoutKeepsTheTreeAndTheRegionsAndMovesWhatWasRead() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let setup = try Setup(dir, variants: ["full"])
            let pushed = try await setup.push("full")
            let original = try await Manifest.open(try await setup.store.get(pushed.manifestKey), keys: setup.keys)
            let record = Self.record(for: pushed)
            let pusher = Pusher(store: setup.store, keys: setup.keys)
            let report = try await pusher.relayout(original, record: record)
            #expect(report.manifestID != pushed.manifestID)
            #expect(report.hotBlocks > 0)
            let key = StoreLayout.manifest(id: report.manifestID, root: .initial, tenant: .default)
            let relaid = try await Manifest.open(try await setup.store.get(key), keys: setup.keys)
            let hot = try #require(relaid.header.hot)
            #expect(hot.length == UInt64(report.hotBlocks) * 4096 && relaid.hotBlocks.count == report.hotBlocks)
            #expect(hot.offset >= (pushed.header.layers.map { $0.offset + $0.length }.max() ?? 0))

            // Layer regions are the same chunks.
            let chunkSize = UInt64(pushed.header.chunkSize)
            for layer in pushed.header.layers where layer.length > 0 {
                let first = Int(layer.offset / chunkSize)
                let last = Int((layer.offset + layer.length - 1) / chunkSize)
                #expect(relaid.header.layers.contains(layer))
                #expect(Array(relaid.chunks[first...last]) == Array(original.chunks[first...last]))
            }
            #expect(report.progress.chunksReused > 0)

            // Both images are sound and hold the same tree.
            _ = try await Puller(store: setup.store, keys: setup.keys).pull(original, to: dir + "/original.ext4")
            _ = try await Puller(store: setup.store, keys: setup.keys).pull(relaid, to: dir + "/relaid.ext4")
            #expect(try TestSupport.fsckProblems(dir + "/relaid.ext4") == nil)
            try rdump(dir + "/original.ext4", into: dir + "/a")
            try rdump(dir + "/relaid.ext4", into: dir + "/b")
            let options = ["--ignore-hardlinks", "--ignore-xattrs", "--ignore-devices", "--ignore-special-bits", "--ignore-symlink-owners"]
            let differences = try Fixtures.compareTrees(expected: dir + "/a", actual: dir + "/b", options: options)
            #expect(differences == nil, "\(differences ?? "")")

            // The new manifest has a record of its own, which names the hot region's chunks.
            let recordKey = StoreLayout.accessRecord(id: report.manifestID, root: .initial, tenant: .default)
            let translated = try await AccessRecord.open(try await setup.store.get(recordKey), for: relaid.header, keys: setup.keys)
            #expect(translated.chunks.count == report.recordChunks && !translated.blocks.isEmpty)
            let hotChunks = Set(UInt32(hot.offset / chunkSize)...UInt32((hot.offset + hot.length - 1) / chunkSize))
            #expect(hotChunks.isSubset(of: Set(translated.chunks)))

            // A file whose moved blocks split its extents past what the inode holds has an extent
            // tree now; the record lists its blocks, which the start reads before the file's
            // content (else it waits for their chunk on demand).
            var treeBlocks: [UInt32] = []
            for inode in Set(relaid.hotBlocks.map(\.inode)).sorted() {
                let stat = try TestSupport.run("debugfs", ["-R", "stat <\(inode)>", dir + "/relaid.ext4"]).output
                for match in stat.matches(of: /\(ETB\d+\):(\d+)/) { treeBlocks.append(UInt32(match.1)!) }
            }
            #expect(!treeBlocks.isEmpty, "no relaid file has an extent tree block: the check below checks nothing")
            let recordedBlocks = Set(translated.blocks.flatMap { $0.first..<($0.first + $0.count) })
            #expect(treeBlocks.allSatisfy(recordedBlocks.contains), "extent tree blocks \(treeBlocks) missing from the record")

            // Laying the new image out from its own record changes nothing: same order, same id.
            let again = try await pusher.relayout(relaid, record: translated)
            #expect(again.manifestID == report.manifestID)

            // The original is untouched.
            #expect(try await Manifest.open(try await setup.store.get(pushed.manifestKey), keys: setup.keys) == original)
        }
    }

    @Test func aRecordWithoutBlocksOrLayerRecordsIsRefusedClearly() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let setup = try Setup(dir, variants: ["full"])
            let pushed = try await setup.push("full")
            let original = try await Manifest.open(try await setup.store.get(pushed.manifestKey), keys: setup.keys)
            let pusher = Pusher(store: setup.store, keys: setup.keys)
            let chunksOnly = AccessRecord(manifestID: pushed.manifestID, chunkCount: pushed.header.chunkCount, chunks: [1])
            await #expect { _ = try await pusher.relayout(original, record: chunksOnly) } throws: { error in
                "\(error)".contains("lists no blocks")
            }
            // Another manifest's record is refused.
            var foreign = Self.record(for: pushed)
            foreign.manifestID = String(repeating: "ab", count: 32)
            await #expect { _ = try await pusher.relayout(original, record: foreign) } throws: { error in
                "\(error)".contains("belongs to manifest \(foreign.manifestID)")
            }
            // Without the layer records, the layout cannot be rebuilt.
            for layer in pushed.header.layers {
                try await setup.store.delete(LayerRecord.key(diffID: layer.diffID, chunkSize: pushed.header.chunkSize,
                                                             salt: pushed.header.salt, tenant: .default))
            }
            await #expect { _ = try await pusher.relayout(original, record: Self.record(for: pushed)) } throws: { error in
                "\(error)".contains("layer record") && "\(error)".contains("push the image again")
            }
        }
    }
}
