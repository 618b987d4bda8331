/// The pages of base snapshots, found by the samples of their fingerprints: where a page that
/// has no identical twin looks for a similar page to be stored as a patch against.
public struct BasePageIndex: Sendable {
    /// A page of a base snapshot: which base, and the page's index in it.
    public struct Location: Sendable, Hashable, Comparable {
        public var base: Int
        public var page: Int

        public init(base: Int, page: Int) {
            self.base = base
            self.page = page
        }

        public static func < (a: Location, b: Location) -> Bool { (a.base, a.page) < (b.base, b.page) }
    }

    /// Pages kept per sample at most: a window shared by thousands of pages (a common data
    /// structure header) says little about which of them is the best base, and an unbounded
    /// list would make each lookup slow.
    public static let pagesPerSample = 8

    private var pagesBySample: [UInt64: [Location]] = [:]

    public init() {}

    /// Samples indexed (for reports).
    public var sampleCount: Int { pagesBySample.count }

    /// Adds a base page with fingerprint `fingerprint` at `location`.
    public mutating func add(_ fingerprint: PageFingerprint, at location: Location) {
        for sample in fingerprint.samples {
            var pages = pagesBySample[sample, default: []]
            guard pages.count < Self.pagesPerSample else { continue }
            pages.append(location)
            pagesBySample[sample] = pages
        }
    }

    /// Base pages sharing at least one sample with `fingerprint`, most shared samples first
    /// (ties in location order, so the choice is deterministic), at most `limit`.
    public func candidates(for fingerprint: PageFingerprint, limit: Int = 4) -> [Location] {
        var shared: [Location: Int] = [:]
        for sample in fingerprint.samples {
            for location in pagesBySample[sample] ?? [] { shared[location, default: 0] += 1 }
        }
        return shared.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.prefix(limit).map(\.key)
    }
}
