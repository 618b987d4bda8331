/// Two RAM files as two snapshots of similar functions leave them, for tests of similar-page
/// deduplication: mostly holes, and where the first (the base) has data, the second has the
/// same page, a page with a few bytes changed, the page with a block moved, or a new page.
public enum SimilarMemory {
    public static let pageSize = 4096

    /// `size` bytes each; the seed fixes every choice.
    public static func pair(size: Int, seed: UInt64) -> (base: [UInt8], derived: [UInt8]) {
        var random = SeededGenerator(seed: seed)
        var base = [UInt8](repeating: 0, count: size), derived = base
        for start in stride(from: 0, to: size, by: pageSize) where random.next() % 3 != 0 {
            let page = random.bytes(pageSize)
            base.replaceSubrange(start..<(start + pageSize), with: page)
            var other = page
            switch random.next() % 5 {
            case 0:
                break
            case 1, 2:
                for _ in 0..<Int(1 + random.next() % 24) { other[Int(random.next() % UInt64(pageSize))] = UInt8(truncatingIfNeeded: random.next()) }
            case 3:
                let from = Int(random.next() % UInt64(pageSize - 256)), to = Int(random.next() % UInt64(pageSize - 256))
                other.replaceSubrange(to..<(to + 256), with: page[from..<(from + 256)])
            default:
                other = random.bytes(pageSize)
            }
            derived.replaceSubrange(start..<(start + pageSize), with: other)
        }
        return (base, derived)
    }
}
