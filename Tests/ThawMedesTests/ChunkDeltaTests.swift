import Testing
import ThawMedes
import ThawTestSupport

/// The chunk delta format: deltas against a base snapshot rebuild their chunk exactly, are small
/// for similar memory, and no input makes the reader crash or return what the format forbids.
@Suite struct ChunkDeltaTests {
    static let chunk = 64 * 1024

    static func basePages(_ base: [UInt8]) -> BaseSnapshotPages {
        var pages = BaseSnapshotPages()
        for start in stride(from: 0, to: base.count, by: SimilarMemory.pageSize) {
            pages.add(page: base[start..<(start + SimilarMemory.pageSize)], number: start / SimilarMemory.pageSize)
        }
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
                #expect(delta.count <= Self.chunk / 2)
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
        version[0] = 2
        let unsupported = #expect(throws: PatchError.self) { try ChunkDelta.parse(version) }
        #expect(unsupported?.kind == .unsupportedVersion)
        // Version, chunk length 65536 (three varint bytes), page size 4096 (two): the first page kind is at 6.
        var kind = delta
        kind[6] = 9
        let unknown = #expect(throws: PatchError.self) { try ChunkDelta.parse(kind) }
        #expect(unknown?.message.contains("unknown page kind 9") == true)
        // A base page that is missing or of the wrong size is named, never guessed.
        let parsed = try ChunkDelta.parse(delta)
        let first = try #require(parsed.basePages.first)
        #expect(throws: PatchError.self) { try ChunkDelta.rebuild(parsed, basePages: [:]) }
        #expect(throws: PatchError.self) { try ChunkDelta.rebuild(parsed, basePages: [first: [1, 2, 3]]) }
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
