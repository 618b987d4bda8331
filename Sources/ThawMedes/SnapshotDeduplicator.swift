import Crypto

/// Medes' decision for each page of a set of memory snapshots: a page of zeros is not stored; a
/// page identical to one already stored costs nothing; a page similar to a page of a base
/// snapshot (found by `PageFingerprint` samples) is stored as a `PagePatch` against it when the
/// patch is at most `patchLimit` bytes; any other page is stored whole.
///
/// Base snapshots are added first and stored whole (identical pages once). They are chosen
/// deliberately, one per group of similar functions, because every patch depends on its base
/// for as long as the patch is kept.
public struct SnapshotDeduplicator: Sendable {
    public static let pageSize = 4096

    /// What became of one page.
    public enum Decision: Sendable, Equatable {
        case zero
        /// Equal to a page stored before.
        case identical
        /// Stored as a patch of this many bytes against the base page at the location.
        case patch(BasePageIndex.Location, bytes: Int)
        /// Stored as it is.
        case whole
    }

    /// Page counts and bytes stored so far.
    public struct Totals: Sendable, Equatable {
        public var nonZeroPages = 0
        public var identicalPages = 0
        public var patchedPages = 0
        public var patchBytes = 0
        public var wholePages = 0

        public init() {}

        /// Bytes the non-zero pages take as they are.
        public var rawBytes: Int { nonZeroPages * SnapshotDeduplicator.pageSize }
        /// Bytes stored with identical pages once and no patches.
        public var identicalOnlyBytes: Int { (wholePages + patchedPages) * SnapshotDeduplicator.pageSize }
        /// Bytes stored with identical pages once and similar pages as patches.
        public var storedBytes: Int { wholePages * SnapshotDeduplicator.pageSize + patchBytes }
    }

    public let patchLimit: Int
    public private(set) var totals = Totals()
    private var stored: Set<[UInt8]> = []  // SHA-256 of each page stored, whole or as a patch
    private var basePages: [BasePageIndex.Location: [UInt8]] = [:]
    private var index = BasePageIndex()
    private var bases = 0

    public init(patchLimit: Int = 2048) {
        self.patchLimit = patchLimit
    }

    /// Adds a base snapshot's pages, in order: each is stored whole unless it is zero or
    /// identical to a page stored before, and indexed for later patches. Returns the base's number.
    @discardableResult
    public mutating func addBase(pages: some Sequence<[UInt8]>) -> Int {
        let base = bases
        bases += 1
        for (number, page) in pages.enumerated() {
            guard !Self.isZero(page) else { continue }
            totals.nonZeroPages += 1
            guard stored.insert(Self.digest(page)).inserted else {
                totals.identicalPages += 1
                continue
            }
            totals.wholePages += 1
            let location = BasePageIndex.Location(base: base, page: number)
            basePages[location] = page
            index.add(PageFingerprint(page: page), at: location)
        }
        return base
    }

    /// Decides how `page` of a snapshot that is not a base is stored, and counts it. `number`
    /// is the page's index in its RAM file: the page at the same index of each base is tried
    /// too (see `bestPatch`).
    public mutating func add(page: [UInt8], number: Int? = nil) -> Decision {
        guard !Self.isZero(page) else { return .zero }
        totals.nonZeroPages += 1
        guard stored.insert(Self.digest(page)).inserted else {
            totals.identicalPages += 1
            return .identical
        }
        if let (location, patch) = bestPatch(for: page, number: number) {
            totals.patchedPages += 1
            totals.patchBytes += patch.count
            return .patch(location, bytes: patch.count)
        }
        totals.wholePages += 1
        return .whole
    }

    /// The shortest patch within the limit against the candidates the fingerprint finds and,
    /// given the page's `number`, the page at the same index of each base: with `nokaslr` a
    /// page often holds, at the same guest address, a near copy of what the base holds there,
    /// even when it shares no sampled window with it.
    public func bestPatch(for page: [UInt8], number: Int? = nil) -> (BasePageIndex.Location, [UInt8])? {
        var candidates = index.candidates(for: PageFingerprint(page: page))
        if let number {
            for base in 0..<bases where !candidates.contains(BasePageIndex.Location(base: base, page: number)) {
                candidates.append(BasePageIndex.Location(base: base, page: number))
            }
        }
        return PagePatch.shortest(for: page, among: candidates, limit: patchLimit) { basePages[$0] }
    }

    /// The base page at `location`, for rebuilding a patched page.
    public func basePage(at location: BasePageIndex.Location) -> [UInt8]? { basePages[location] }

    static func isZero(_ page: [UInt8]) -> Bool { page.allSatisfy { $0 == 0 } }
    static func digest(_ page: [UInt8]) -> [UInt8] { Array(SHA256.hash(data: page)) }
}
