import Crypto

/// The non-zero pages of one base snapshot's RAM, indexed for `ChunkDelta`: by content for
/// identical pages and by `PageFingerprint` samples for similar ones. What a snapshot taken
/// against the base is encoded with.
public struct BaseSnapshotPages: Sendable {
    public let pageSize: Int
    /// The largest patch kept; a page whose best patch is longer is stored as it is.
    public let patchLimit: Int
    private var pages: [Int: [UInt8]] = [:]
    private var byDigest: [[UInt8]: Int] = [:]
    private var index = BasePageIndex()

    public init(pageSize: Int = SnapshotDeduplicator.pageSize, patchLimit: Int = 2048) {
        self.pageSize = pageSize
        self.patchLimit = patchLimit
    }

    /// Base pages held.
    public var count: Int { pages.count }

    /// Adds page `number` (its offset in the RAM file / page size) of the base; zero pages and
    /// pages of another size are left out.
    public mutating func add(page: some Collection<UInt8>, number: Int) {
        guard page.count == pageSize, !page.allSatisfy({ $0 == 0 }) else { return }
        let bytes = Array(page)
        pages[number] = bytes
        let digest = Array(SHA256.hash(data: bytes))
        if byDigest[digest] == nil { byDigest[digest] = number }
        index.add(PageFingerprint(page: bytes), at: BasePageIndex.Location(base: 0, page: number))
    }

    /// Adds every page of `memory`, a run of the base's RAM starting at page `firstPage`.
    public mutating func add(memory: [UInt8], firstPage: Int) {
        for start in stride(from: 0, to: memory.count - pageSize + 1, by: pageSize) {
            add(page: memory[start..<(start + pageSize)], number: firstPage + start / pageSize)
        }
    }

    /// The base page to patch `page` against and the patch, or nil when no base page gives a
    /// patch within the limit. An identical base page gives the shortest patch there is. The
    /// candidates are the pages the fingerprint finds and, given the page's `number` in its RAM
    /// file, the base page at the same number (see `SnapshotDeduplicator.bestPatch`).
    public func patch(for page: some Collection<UInt8>, number: Int? = nil) -> (basePage: UInt64, patch: [UInt8])? {
        let target = Array(page)
        if let same = byDigest[Array(SHA256.hash(data: target))] {
            return (UInt64(same), PagePatch.encode(target, against: target))
        }
        var candidates = index.candidates(for: PageFingerprint(page: target))
        if let number, !candidates.contains(where: { $0.page == number }) {
            candidates.append(BasePageIndex.Location(base: 0, page: number))
        }
        return PagePatch.shortest(for: target, among: candidates, limit: patchLimit) { pages[$0.page] }
            .map { (UInt64($0.page), $1) }
    }

    /// `chunk` as a `ChunkDelta`, when that is worth storing instead of the chunk: patched
    /// against these pages when at least one page is and the delta is at most `limit` bytes
    /// (half the chunk by default, since every rebuilt chunk costs its reader extra fetches of
    /// base pages), or just compressed (`ChunkDelta.compressed`), whichever is smaller. Nil
    /// when neither is: the chunk is stored as it is.
    /// `firstPage` is the number of the chunk's first page in its RAM file.
    public func delta(for chunk: [UInt8], firstPage: Int? = nil, limit: Int? = nil) -> [UInt8]? {
        guard chunk.count % pageSize == 0, chunk.count <= ChunkDelta.maximumChunkLength, !chunk.allSatisfy({ $0 == 0 }) else { return nil }
        var patched = 0
        let delta = ChunkDelta.encode(chunk, pageSize: pageSize) { page in
            let number = firstPage.map { $0 + (page.startIndex - chunk.startIndex) / pageSize }
            guard let found = patch(for: page, number: number) else { return nil }
            patched += 1
            return found
        }
        // With no page patched, `delta` is the chunk just compressed.
        let compressed = patched > 0 ? ChunkDelta.compressed(chunk, pageSize: pageSize)
            : ChunkDelta.isWorthStoring(delta, chunkLength: chunk.count) ? delta : nil
        guard patched > 0, delta.count <= (limit ?? chunk.count / 2), delta.count < compressed?.count ?? .max else { return compressed }
        return delta
    }
}
