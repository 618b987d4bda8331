import Foundation
import Testing
import ThawCache
import ThawSeal
import ThawTestSupport

@Suite struct DiskTierTests {
    static func open(_ directory: String, capacity: Int = 1 << 20, maximumChunkBytes: Int = DiskTier.largestChunk) throws -> DiskTier {
        try DiskTier(directory: directory, capacity: capacity, policy: .default, maximumChunkBytes: maximumChunkBytes)
    }

    /// The chunk files under `directory`, as relative paths.
    static func files(_ directory: String) throws -> Set<String> {
        let enumerator = FileManager.default.enumerator(atPath: directory)!
        var found: Set<String> = []
        while let path = enumerator.nextObject() as? String {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: directory + "/" + path, isDirectory: &isDirectory), !isDirectory.boolValue {
                found.insert(path)
            }
        }
        return found
    }

    @Test func writesReadsAndFansOut() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let tier = try Self.open(dir + "/cache")
            let chunk = TestChunks.chunk(1)
            #expect(tier.read(chunk.name) == nil)
            #expect(try tier.write(chunk.name, chunk.bytes))
            #expect(try tier.write(chunk.name, chunk.bytes) == false, "already there")
            let hex = chunk.name.hex
            #expect(tier.path(of: chunk.name) == dir + "/cache/" + hex.prefix(2) + "/" + hex)
            #expect(try Self.files(dir + "/cache") == [String(hex.prefix(2)) + "/" + hex])
            #expect(tier.read(chunk.name) == chunk.bytes)
            let stats = tier.statistics
            #expect(stats.hits == 1 && stats.misses == 1 && stats.insertions == 1)
            #expect(stats.bytes == 4096 && stats.entries == 1)
        }
    }

    @Test func restartKeepsTheContents() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let chunks = (0..<12).map { TestChunks.chunk($0, size: 1000 + $0) }
            do {
                let tier = try Self.open(dir)
                for chunk in chunks { try tier.write(chunk.name, chunk.bytes) }
            }
            let reopened = try Self.open(dir)
            #expect(reopened.scanReport.files == 12)
            #expect(reopened.scanReport.bytes == chunks.reduce(0) { $0 + $1.bytes.count })
            #expect(reopened.statistics.bytes == reopened.scanReport.bytes)
            for chunk in chunks { #expect(reopened.read(chunk.name) == chunk.bytes) }
            #expect(reopened.statistics.hits == 12)
        }
    }

    @Test(arguments: ["flipped", "truncated", "replaced"])
    func corruptFileIsDroppedAsAMiss(damage: String) throws {
        try TestSupport.withTemporaryDirectory { dir in
            let tier = try Self.open(dir)
            let chunk = TestChunks.chunk(5)
            let other = TestChunks.chunk(6)
            try tier.write(chunk.name, chunk.bytes)
            try tier.write(other.name, other.bytes)
            let path = tier.path(of: chunk.name)
            var bytes = chunk.bytes
            switch damage {
            case "flipped": bytes[100] ^= 1
            case "truncated": bytes = Array(bytes.prefix(1000))
            default: bytes = other.bytes
            }
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            #expect(tier.read(chunk.name) == nil)
            #expect(!FileManager.default.fileExists(atPath: path))
            #expect(!tier.contains(chunk.name))
            #expect(tier.corruptFilesDropped == 1)
            let stats = tier.statistics
            #expect(stats.misses == 1 && stats.hits == 0 && stats.entries == 1 && stats.bytes == 4096)
            #expect(tier.read(other.name) == other.bytes, "the other chunk is untouched")
            #expect(try tier.write(chunk.name, chunk.bytes), "a good copy can come back")
            #expect(tier.read(chunk.name) == chunk.bytes)
        }
    }

    /// A file damaged while the cache was down is found when read after the restart.
    @Test func corruptFileFoundAfterRestart() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let chunk = TestChunks.chunk(9)
            let path = try Self.open(dir).path(of: chunk.name)
            try Self.open(dir).write(chunk.name, chunk.bytes)
            try Data(chunk.bytes.prefix(2048)).write(to: URL(fileURLWithPath: path))
            let tier = try Self.open(dir)
            #expect(tier.scanReport.files == 1)
            #expect(tier.read(chunk.name) == nil)
            #expect(tier.corruptFilesDropped == 1 && tier.statistics.misses == 1 && tier.statistics.entries == 0)
        }
    }

    @Test func openRemovesTemporaryAndImpossibleFiles() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let good = TestChunks.chunk(1)
            let tooBig = TestChunks.chunk(2, size: 8192)
            let misplaced = TestChunks.chunk(3)
            let empty = TestChunks.chunk(4)
            do {
                let tier = try Self.open(dir)
                try tier.write(good.name, good.bytes)
                try tier.write(tooBig.name, tooBig.bytes)
            }
            func put(_ relative: String, _ bytes: [UInt8]) throws {
                let url = URL(fileURLWithPath: dir + "/" + relative)
                try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
                try Data(bytes).write(to: url)
            }
            let goodHex = good.name.hex
            let wrongFolder = misplaced.name.hex.hasPrefix("00") ? "01" : "00"
            try put(goodHex.prefix(2) + "/" + goodHex + ".tmp-killed", Array(good.bytes.prefix(100)))
            try put(goodHex.prefix(2) + "/" + "notachunk", [1, 2, 3])
            try put(wrongFolder + "/" + misplaced.name.hex, misplaced.bytes)
            try put(empty.name.hex.prefix(2) + "/" + empty.name.hex, [])
            try put(goodHex.prefix(2) + "/" + goodHex.uppercased(), good.bytes)
            try put("README", [1])  // outside the fan-out folders: not the tier's
            try put("cache-notes/x", [1])

            let tier = try Self.open(dir, maximumChunkBytes: 4096)
            #expect(tier.scanReport.temporaryFilesRemoved == 1)
            #expect(tier.scanReport.invalidFilesRemoved == 5)  // notachunk, misplaced, empty, uppercase, too big
            #expect(tier.scanReport.files == 1 && tier.scanReport.bytes == 4096)
            #expect(try Self.files(dir) == [String(goodHex.prefix(2)) + "/" + goodHex, "README", "cache-notes/x"])
            #expect(tier.read(good.name) == good.bytes)
        }
    }

    @Test func capacityHoldsAndASmallerCapacityEvictsAtOpen() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let chunks = (0..<20).map { TestChunks.chunk($0) }
            do {
                let tier = try Self.open(dir, capacity: 5 * 4096 + 100)
                for chunk in chunks {
                    try tier.write(chunk.name, chunk.bytes)
                    #expect(tier.statistics.bytes <= 5 * 4096 + 100)
                }
                #expect(tier.statistics.entries == 5 && tier.statistics.evictions == 15)
                #expect(try Self.files(dir).count == 5)
                #expect(try tier.write(TestChunks.chunk(99, size: 6 * 4096).name, TestChunks.bytes(99, size: 6 * 4096)) == false)
            }
            let smaller = try Self.open(dir, capacity: 2 * 4096)
            #expect(smaller.scanReport.evictedToFit == 3)
            #expect(smaller.scanReport.files == 2)
            #expect(try Self.files(dir).count == 2)
        }
    }

    @Test func fileDeletedFromOutsideIsForgotten() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let tier = try Self.open(dir)
            let chunk = TestChunks.chunk(1)
            try tier.write(chunk.name, chunk.bytes)
            try FileManager.default.removeItem(atPath: tier.path(of: chunk.name))
            #expect(tier.read(chunk.name) == nil)
            #expect(tier.statistics.entries == 0 && tier.statistics.bytes == 0 && tier.corruptFilesDropped == 0)
        }
    }
}
