import Testing
import ThawMedes
import ThawTestSupport

/// The chunk delta format: deltas against a base snapshot rebuild their chunk exactly, are small
/// for similar memory, and no input makes the reader crash or return what the format forbids.
@Suite struct ChunkDeltaTests {
    static let chunk = 64 * 1024

    static func basePages(_ base: [UInt8]) -> BaseSnapshotPages {
        var pages = BaseSnapshotPages()
        pages.add(memory: base, firstPage: 0)
        return pages
    }

    static func rebuild(_ delta: [UInt8], from base: [UInt8]) throws -> [UInt8] {
        let parsed = try ChunkDelta.parse(delta)
        var pages: [UInt64: [UInt8]] = [:]
        for page in parsed.basePages {
            let start = Int(page) * parsed.pageSize
            pages[page] = Array(base[start..<(start + parsed.pageSize)])
        }
        return try ChunkDelta.rebuild(parsed, basePages: pages)
    }

    @Test(arguments: [UInt64(1), 2, 3, 4])
    func deltasOfSimilarMemoryRebuildTheirChunksAndAreSmall(seed: UInt64) throws {
        let (base, derived) = SimilarMemory.pair(size: 2 << 20, seed: seed)
        let pages = Self.basePages(base)
        var deltaBytes = 0, deltas = 0
        for start in stride(from: 0, to: derived.count, by: Self.chunk) {
            let chunk = Array(derived[start..<(start + Self.chunk)])
            // Every chunk round-trips, worth storing or not.
            let full = ChunkDelta.encode(chunk, pageSize: SimilarMemory.pageSize) { pages.patch(for: $0) }
            #expect(try Self.rebuild(full, from: base) == chunk, "chunk at \(start)")
            if let delta = pages.delta(for: chunk) {
                #expect(delta.count <= Self.chunk * 7 / 8)
                #expect(try Self.rebuild(delta, from: base) == chunk)
                deltaBytes += delta.count
                deltas += 1
            }
        }
        #expect(deltas > 0)
        // A fifth of the data pages are new and stay whole; the rest are patches of a few hundred
        // bytes, so the deltas cost well under a third of the chunks they stand for.
        #expect(deltaBytes * 10 < deltas * Self.chunk * 3, "\(deltaBytes) bytes in \(deltas) deltas")
    }

    @Test func unrelatedAndZeroChunksAreNotWorthADelta() {
        var random = SeededGenerator(seed: 9)
        let pages = Self.basePages(random.bytes(256 * 1024))
        #expect(pages.delta(for: random.bytes(Self.chunk)) == nil)
        #expect(pages.delta(for: [UInt8](repeating: 0, count: Self.chunk)) == nil, "a zero chunk is never stored")
    }

    @Test func anEqualPageIsOneShortCopy() throws {
        var random = SeededGenerator(seed: 11)
        let base = random.bytes(16 * SimilarMemory.pageSize)
        let pages = Self.basePages(base)
        // The chunk holds base pages 5..<16, then zeros: every data page has an equal twin.
        var chunk = Array(base[(5 * 4096)..<(16 * 4096)])
        chunk += [UInt8](repeating: 0, count: 5 * 4096)
        let delta = try #require(pages.delta(for: chunk))
        #expect(delta.count < 16 * 12, "\(delta.count) bytes")
        #expect(try Self.rebuild(delta, from: base) == chunk)
        #expect(try ChunkDelta.parse(delta).basePages == (5..<16).map(UInt64.init))
    }

    @Test func everyTruncationAndChangedKindIsRefused() throws {
        let (base, derived) = SimilarMemory.pair(size: 256 * 1024, seed: 21)
        let pages = Self.basePages(base)
        let chunk = Array(derived[0..<Self.chunk])
        let delta = ChunkDelta.encode(chunk, pageSize: SimilarMemory.pageSize) { pages.patch(for: $0) }
        for length in 0..<delta.count {
            #expect(throws: PatchError.self, "cut at \(length)") { try ChunkDelta.parse(Array(delta[0..<length])) }
        }
        #expect(throws: PatchError.self) { try ChunkDelta.parse(delta + [0]) }
        var version = delta
        version[0] = 9
        let unsupported = #expect(throws: PatchError.self) { try ChunkDelta.parse(version) }
        #expect(unsupported?.kind == .unsupportedVersion)
        // Version 1 keeps the pages uncompressed after the header (version, chunk length 65536
        // in three varint bytes, page size 4096 in two): it is still read, and its first page
        // kind is at byte 6.
        let uncompressed = try Self.uncompressed(delta)
        #expect(try ChunkDelta.parse(uncompressed) == ChunkDelta.parse(delta))
        var kind = uncompressed
        kind[6] = 9
        let unknown = #expect(throws: PatchError.self) { try ChunkDelta.parse(kind) }
        #expect(unknown?.message.contains("unknown page kind 9") == true)
        for length in stride(from: 0, to: uncompressed.count, by: 97) {
            #expect(throws: PatchError.self, "version 1 cut at \(length)") { try ChunkDelta.parse(Array(uncompressed[0..<length])) }
        }
        // A base page that is missing or of the wrong size is named, never guessed.
        let parsed = try ChunkDelta.parse(delta)
        let first = try #require(parsed.basePages.first)
        #expect(throws: PatchError.self) { try ChunkDelta.rebuild(parsed, basePages: [:]) }
        #expect(throws: PatchError.self) { try ChunkDelta.rebuild(parsed, basePages: [first: [1, 2, 3]]) }
    }

    /// `delta` (version 2) as version 1: the same header, the page list uncompressed.
    static func uncompressed(_ delta: [UInt8]) throws -> [UInt8] {
        [1] + delta[1..<6] + (try ZstdFrame.decompress(Array(delta[6...]), limit: 1 << 21))
    }

    @Test func memoryThatCompressesIsStoredCompressedAndRebuildsExactly() throws {
        var random = SeededGenerator(seed: 41)
        // Pages of text-like bytes (a small alphabet), a zero page and one random page.
        var chunk: [UInt8] = []
        for page in 0..<16 {
            switch page {
            case 3: chunk += [UInt8](repeating: 0, count: 4096)
            case 7: chunk += random.bytes(4096)
            default: chunk += (0..<4096).map { _ in UInt8(97 + random.next() % 8) }
            }
        }
        let delta = try #require(ChunkDelta.compressed(chunk, pageSize: 4096))
        #expect(delta.count < chunk.count / 2, "\(delta.count) bytes")
        let parsed = try ChunkDelta.parse(delta)
        #expect(parsed.basePages.isEmpty)
        #expect(parsed.pages[3] == .zero)
        #expect(try ChunkDelta.rebuild(parsed, basePages: [:]) == chunk)
        // Base pages make it no worse: the smaller of patched and compressed is kept.
        let pages = Self.basePages(Array(chunk[(7 * 4096)..<(8 * 4096)]))
        let either = try #require(pages.delta(for: chunk))
        #expect(either.count <= delta.count)
        #expect(try Self.rebuild(either, from: Array(chunk[(7 * 4096)..<(8 * 4096)])) == chunk)
        // Random memory does not compress and is stored as it is; zeros are not stored at all.
        #expect(ChunkDelta.compressed(random.bytes(Self.chunk), pageSize: 4096) == nil)
        #expect(ChunkDelta.compressed([UInt8](repeating: 0, count: Self.chunk), pageSize: 4096) == nil)
    }

    @Test func aFrameThatDeclaresTooMuchOrIsDamagedIsRefused() throws {
        let frame = ZstdFrame.compress([UInt8](repeating: 7, count: 100_000))
        #expect(try ZstdFrame.decompress(frame, limit: 100_000) == [UInt8](repeating: 7, count: 100_000))
        #expect(throws: ZstdFrame.DecompressionError.self) { try ZstdFrame.decompress(frame, limit: 99_999) }
        #expect(throws: ZstdFrame.DecompressionError.self) { try ZstdFrame.decompress(Array(frame.dropLast()), limit: 100_000) }
        #expect(throws: ZstdFrame.DecompressionError.self) { try ZstdFrame.decompress([1, 2, 3, 4, 5, 6, 7, 8], limit: 100) }
        // A delta whose frame declares more than a page list of its chunk can hold.
        let huge = [ChunkDelta.version, 0x80, 0x80, 0x04, 0x80, 0x20] + ZstdFrame.compress([UInt8](repeating: 0, count: 1 << 22))
        let refused = #expect(throws: PatchError.self) { try ChunkDelta.parse(huge) }
        #expect(refused?.message.contains("more than") == true)
    }

    @Test func randomInputNeverCrashesTheReader() {
        var random = SeededGenerator(seed: 31)
        for round in 0..<5_000 {
            var bytes = random.bytes(Int(random.next() % 64))
            if round % 2 == 0, !bytes.isEmpty { bytes[0] = ChunkDelta.version }
            if let parsed = try? ChunkDelta.parse(bytes) {
                #expect(parsed.pages.count * parsed.pageSize == parsed.chunkLength)
            }
        }
    }
}
