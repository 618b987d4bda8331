import Testing
import ThawMedes
import ThawTestSupport

/// Fingerprints find similar pages, shifted content included, and ignore filler.
@Suite struct FingerprintTests {
    @Test func equalPagesHaveEqualFingerprintsAndFillHasNone() {
        var random = SeededGenerator(seed: 1)
        let page = random.bytes(4096)
        let fingerprint = PageFingerprint(page: page)
        #expect(fingerprint.samples.count == PageFingerprint.sampleCount && fingerprint == PageFingerprint(page: page))
        #expect(fingerprint.samples == fingerprint.samples.sorted())
        #expect(PageFingerprint(page: [UInt8](repeating: 0, count: 4096)).isEmpty)
        #expect(PageFingerprint(page: [UInt8](repeating: 0xcc, count: 4096)).isEmpty)
        #expect(PageFingerprint(page: random.bytes(63)).isEmpty, "shorter than a window")
        // A few bytes in a page of zeros: only windows that hold them are sampled.
        var sparse = [UInt8](repeating: 0, count: 4096)
        sparse[2000] = 1
        let sampled = PageFingerprint(page: sparse)
        #expect(!sampled.isEmpty && sampled.samples.count <= PageFingerprint.sampleCount)
        var moved = [UInt8](repeating: 0, count: 4096)
        moved[3000] = 1
        #expect(PageFingerprint(page: moved) == sampled, "the same windows elsewhere in the page")
    }

    @Test func shiftedContentKeepsMostSamples() {
        var total = 0
        for seed in UInt64(1)...50 {
            var random = SeededGenerator(seed: seed)
            let page = random.bytes(4096)
            let shift = Int.random(in: 1...100, using: &random)
            let shifted = Array((random.bytes(shift) + page).prefix(4096))
            let shared = PageFingerprint(page: page).matches(PageFingerprint(page: shifted))
            #expect(shared >= 2, "seed \(seed), shift \(shift): \(shared) shared")
            total += shared
        }
        #expect(total >= 50 * 3, "on average at least 3 of 4 samples survive a shift: \(total)")
        var random = SeededGenerator(seed: 77)
        #expect(PageFingerprint(page: random.bytes(4096)).matches(PageFingerprint(page: random.bytes(4096))) == 0)
    }

    @Test func theIndexFindsTheBaseAnEditedPageCameFrom() {
        var random = SeededGenerator(seed: 8)
        var index = BasePageIndex()
        let pages = (0..<300).map { _ in random.bytes(4096) }
        for (number, page) in pages.enumerated() {
            index.add(PageFingerprint(page: page), at: .init(base: number % 3, page: number))
        }
        for number in [0, 57, 299] {
            var edited = Array((random.bytes(13) + pages[number]).prefix(4096))
            for _ in 0..<30 { edited[Int.random(in: 0..<4096, using: &random)] = 0xee }
            let found = index.candidates(for: PageFingerprint(page: edited))
            #expect(found.first == .init(base: number % 3, page: number), "page \(number): \(found)")
        }
        #expect(index.candidates(for: PageFingerprint(page: random.bytes(4096))).isEmpty)
    }
}
