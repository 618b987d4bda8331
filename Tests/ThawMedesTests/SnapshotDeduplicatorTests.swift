import Testing
import ThawMedes
import ThawTestSupport

/// The per-page decision over a base snapshot and a similar one.
@Suite struct SnapshotDeduplicatorTests {
    @Test func pagesAreZeroIdenticalPatchedOrWholeAndPatchesRebuild() throws {
        var random = SeededGenerator(seed: 21)
        let basePages = (0..<64).map { $0 % 8 == 7 ? [UInt8](repeating: 0, count: 4096) : random.bytes(4096) }
        var dedup = SnapshotDeduplicator(patchLimit: 1024)
        dedup.addBase(pages: basePages + [basePages[0]])  // a page twice in the base: stored once
        #expect(dedup.totals.nonZeroPages == 57 && dedup.totals.wholePages == 56 && dedup.totals.identicalPages == 1)

        var expected: [SnapshotDeduplicator.Decision] = []
        var pages: [[UInt8]] = []
        for number in 0..<40 {
            switch number % 4 {
            case 0:
                pages.append([UInt8](repeating: 0, count: 4096))
                expected.append(.zero)
            case 1:
                pages.append(basePages[number])
                expected.append(.identical)
            case 2:  // a base page with a few edits, and shifted by 5 bytes
                var page = Array((random.bytes(5) + basePages[number]).prefix(4096))
                for _ in 0..<10 { page[Int.random(in: 0..<4096, using: &random)] ^= 0x5a }
                pages.append(page)
                expected.append(.patch(.init(base: 0, page: number), bytes: 0))
            default:
                pages.append(random.bytes(4096))
                expected.append(.whole)
            }
        }
        for (number, page) in pages.enumerated() {
            let patch = dedup.bestPatch(for: page)
            let decision = dedup.add(page: page)
            switch (decision, expected[number]) {
            case (.patch(let location, let bytes), .patch(let wanted, _)):
                #expect(location == wanted && bytes < 200, "page \(number): \(bytes) bytes against \(location)")
                let (_, bytesOfPatch) = try #require(patch)
                let base = try #require(dedup.basePage(at: location))
                #expect(try PagePatch.apply(bytesOfPatch, to: base) == page)
            default:
                #expect(decision == expected[number], "page \(number)")
            }
        }
        // The same similar page again is now identical to the one stored as a patch.
        #expect(dedup.add(page: pages[2]) == .identical)
        let totals = dedup.totals
        #expect(totals.patchedPages == 10 && totals.wholePages == 56 + 10 && totals.identicalPages == 1 + 10 + 1)
        #expect(totals.storedBytes < totals.identicalOnlyBytes && totals.identicalOnlyBytes < totals.rawBytes)
        #expect(totals.storedBytes == (56 + 10) * 4096 + totals.patchBytes)
    }
}
