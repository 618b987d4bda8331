/// A memory chunk stored as the difference from a base snapshot: page by page, a zero page, the
/// page as it is, or a `PagePatch` against one page of the base snapshot's RAM. This is how
/// similar pages (Medes) are kept in the store: the chunk keeps its place and its convergent
/// name in the memory manifest, and a reader that misses it everywhere rebuilds it from the
/// delta and the base pages it names, then checks the result against that name.
///
/// The format (also in docs/memory-snapshots.md):
///
///     delta = version:u8 (2)  chunk-length:varint  page-size:varint  zstd-frame(page*)
///           | version:u8 (1)  chunk-length:varint  page-size:varint  page*
///     page  = 0x00                                          a page of zeros
///           | 0x01  byte[page-size]                         the page as it is
///           | 0x02  base-page:varint  patch-length:varint  patch
///                                                           PagePatch against page base-page
///                                                           (its offset / page-size) of the base RAM
///
/// There are exactly chunk-length / page-size pages, chunk-length is a multiple of page-size,
/// and nothing follows the last page. Version 2, what `encode` writes, keeps the pages in one
/// zstd frame (`ZstdFrame`): guest memory compresses to about 38% in 64 KiB chunks, so a delta
/// with no base page at all (every page zero or literal) is how a snapshot's memory is stored
/// compressed. Version 1, the pages as they are, is still read. Hand-written, like `PagePatch`:
/// no package offers it.
public enum ChunkDelta {
    public static let version: UInt8 = 2
    static let uncompressedVersion: UInt8 = 1
    /// The largest chunk a delta may describe (memory chunks are at most 512 KiB).
    public static let maximumChunkLength = 1 << 20
    static let zeroPage: UInt8 = 0
    static let literalPage: UInt8 = 1
    static let patchedPage: UInt8 = 2

    /// One page of a delta.
    public enum Page: Sendable, Equatable {
        case zero
        case literal(ArraySlice<UInt8>)
        case patch(basePage: UInt64, patch: ArraySlice<UInt8>)
    }

    /// A parsed delta: what a reader fetches (`basePages`) before it rebuilds the chunk.
    public struct Parsed: Sendable, Equatable {
        public var chunkLength: Int
        public var pageSize: Int
        public var pages: [Page]

        /// The base pages the patches name, each once, in ascending order.
        public var basePages: [UInt64] {
            Set(pages.compactMap { if case .patch(let page, _) = $0 { page } else { nil } }).sorted()
        }

        /// Pages stored as patches.
        public var patchedPageCount: Int { pages.count(where: { if case .patch = $0 { true } else { false } }) }
    }

    /// Encodes `chunk` page by page: zero pages as zero, pages `patch` gives a patch for (base
    /// page number and patch) as patches, the rest as they are.
    public static func encode(_ chunk: [UInt8], pageSize: Int, patch: (ArraySlice<UInt8>) -> (basePage: UInt64, patch: [UInt8])?) -> [UInt8] {
        precondition(pageSize > 0 && chunk.count % pageSize == 0 && chunk.count <= maximumChunkLength,
                     "a delta's chunk is a whole number of pages and at most \(maximumChunkLength) bytes")
        var out: [UInt8] = []
        out.reserveCapacity(chunk.count + chunk.count / pageSize)
        for start in stride(from: 0, to: chunk.count, by: pageSize) {
            let page = chunk[start..<(start + pageSize)]
            if page.allSatisfy({ $0 == 0 }) {
                out.append(zeroPage)
            } else if let (basePage, bytes) = patch(page) {
                out.append(patchedPage)
                PagePatch.appendVarint(basePage, to: &out)
                PagePatch.appendVarint(UInt64(bytes.count), to: &out)
                out += bytes
            } else {
                out.append(literalPage)
                out += page
            }
        }
        var delta: [UInt8] = [version]
        PagePatch.appendVarint(UInt64(chunk.count), to: &delta)
        PagePatch.appendVarint(UInt64(pageSize), to: &delta)
        return delta + ZstdFrame.compress(out)
    }

    /// `chunk` as a delta that names no base page, its pages in a zstd frame: what a snapshot's
    /// memory chunk is stored as when that saves at least an eighth of it (rebuilding costs the
    /// reader a decompression and a sealing; a smaller saving is not worth that). Nil otherwise.
    /// A zero chunk gives nil too: the store never holds one.
    public static func compressed(_ chunk: [UInt8], pageSize: Int) -> [UInt8]? {
        guard !chunk.allSatisfy({ $0 == 0 }) else { return nil }
        let delta = encode(chunk, pageSize: pageSize) { _ in nil }
        return isWorthStoring(delta, chunkLength: chunk.count) ? delta : nil
    }

    /// Whether a delta that names no base page saves enough of its chunk (an eighth) to be
    /// stored in the chunk's place.
    static func isWorthStoring(_ delta: [UInt8], chunkLength: Int) -> Bool {
        delta.count <= chunkLength - chunkLength / 8
    }

    /// The most bytes a delta's page list can take for `pages` pages of `pageSize` (each page
    /// a kind byte, two varints and at most a literal page or a patch a little longer than one):
    /// what decompression is bounded by.
    static func largestPageList(pages: Int, pageSize: Int) -> Int {
        pages * (2 * pageSize + 32)
    }

    /// Reads a delta.
    ///
    /// - Throws: `PatchError` naming what is wrong and at which byte, for anything `encode`
    ///   could not have written; the patches themselves are checked when they are applied.
    public static func parse(_ delta: [UInt8]) throws(PatchError) -> Parsed {
        var header = PatchReader(delta, what: "chunk delta")
        let found = try header.byte("version")
        guard found == version || found == uncompressedVersion else {
            throw PatchError(.unsupportedVersion, "chunk delta version \(found) is not supported (this reader knows \(uncompressedVersion) and \(version))")
        }
        let chunkLength = try header.varint("chunk length"), pageSize = try header.varint("page size")
        guard chunkLength <= UInt64(maximumChunkLength), pageSize > 0, pageSize <= chunkLength, chunkLength % pageSize == 0 else {
            throw PatchError(.malformed, "the chunk delta declares a chunk of \(chunkLength) bytes in pages of \(pageSize): not a whole number of pages of at most \(maximumChunkLength) bytes")
        }
        let count = Int(chunkLength / pageSize)
        var reader: PatchReader
        if found == version {
            let frame = Array(delta[header.offset...])
            let pageList: [UInt8]
            do {
                pageList = try ZstdFrame.decompress(frame, limit: largestPageList(pages: count, pageSize: Int(pageSize)))
            } catch {
                throw PatchError(.malformed, "the chunk delta's pages (\(frame.count) bytes from byte \(header.offset)) \(error.description)")
            }
            reader = PatchReader(pageList, what: "chunk delta's page list")
        } else {
            reader = PatchReader(Array(delta[header.offset...]), what: "chunk delta's page list")
        }
        var pages: [Page] = []
        pages.reserveCapacity(count)
        for number in 0..<count {
            let at = reader.offset
            switch try reader.byte("page \(number)") {
            case zeroPage:
                pages.append(.zero)
            case literalPage:
                pages.append(.literal(try reader.bytes(Int(pageSize), "page \(number)")))
            case patchedPage:
                let basePage = try reader.varint("base page of page \(number)")
                let length = try reader.varint("patch length of page \(number)")
                guard length <= UInt64(reader.remaining) else {
                    throw PatchError(.truncated, "the chunk delta ends inside the patch of page \(number) (\(length) bytes at byte \(reader.offset))")
                }
                pages.append(.patch(basePage: basePage, patch: try reader.bytes(Int(length), "patch of page \(number)")))
            case let kind:
                throw PatchError(.malformed, "unknown page kind \(kind) for page \(number) at byte \(at) of the chunk delta")
            }
        }
        guard reader.remaining == 0 else {
            throw PatchError(.malformed, "the chunk delta has \(reader.remaining) bytes after its last page")
        }
        return Parsed(chunkLength: Int(chunkLength), pageSize: Int(pageSize), pages: pages)
    }

    /// Rebuilds the chunk from a parsed delta and the base pages it names.
    ///
    /// - Throws: `PatchError` when a named base page is missing or has the wrong size, or a
    ///   patch does not apply to it or does not give a whole page.
    public static func rebuild(_ delta: Parsed, basePages: [UInt64: [UInt8]]) throws(PatchError) -> [UInt8] {
        var chunk: [UInt8] = []
        chunk.reserveCapacity(delta.chunkLength)
        for (number, page) in delta.pages.enumerated() {
            switch page {
            case .zero:
                chunk.append(contentsOf: repeatElement(0, count: delta.pageSize))
            case .literal(let bytes):
                chunk += bytes
            case .patch(let basePage, let patch):
                guard let base = basePages[basePage], base.count == delta.pageSize else {
                    throw PatchError(.malformed, "page \(number) of the chunk delta is patched against base page \(basePage), which was not given as a \(delta.pageSize)-byte page")
                }
                let rebuilt = try PagePatch.apply(Array(patch), to: base)
                guard rebuilt.count == delta.pageSize else {
                    throw PatchError(.malformed, "the patch of page \(number) of the chunk delta gives \(rebuilt.count) bytes, not a page of \(delta.pageSize)")
                }
                chunk += rebuilt
            }
        }
        return chunk
    }
}
