import ThawBinary

/// The chunks one start of an image read, in the order it first read them, so the next start
/// can fetch them ahead of its reads (REAP: record and prefetch).
///
/// Sealed like a manifest: the public part names the manifest and its chunk count, so garbage
/// collection and tools can tell what a record belongs to without a key; the order itself is
/// in the sealed payload, since which files a function touches says something about it.
///
/// Version 2 also lists the 4 KiB blocks read, first touch first, as runs: what a relayout
/// needs to copy exactly those blocks into an image's hot region (`HotPlacement`).
///
/// ```
/// public:  manifest id (short string) | chunk count u32
/// payload v1: chunk index u32, one per recorded chunk, first touch first
/// payload v2: chunk count n u32 | n × chunk index u32 | run count u32 | runs × (first block u32, blocks u32)
/// ```
public struct AccessRecord: Sendable, Equatable {
    public static let formatVersion: UInt16 = 2

    /// Consecutive 4 KiB blocks of the image, first read together.
    public struct BlockRun: Sendable, Equatable {
        public var first: UInt32
        public var count: UInt32

        public init(first: UInt32, count: UInt32) {
            self.first = first
            self.count = count
        }
    }

    /// The manifest (`Manifest.header.id`) whose chunks the indices refer to.
    public var manifestID: String
    /// The manifest's chunk count; every index is below it.
    public var chunkCount: Int
    /// Indices of the chunks read, each once, in first-touch order.
    public var chunks: [UInt32]
    /// Blocks read, each once, in first-touch order; empty in records of version 1 and of
    /// memory snapshots.
    public var blocks: [BlockRun]

    public init(manifestID: String, chunkCount: Int, chunks: [UInt32], blocks: [BlockRun] = []) {
        self.manifestID = manifestID
        self.chunkCount = chunkCount
        self.chunks = chunks
        self.blocks = blocks
    }

    /// The bytes of the image the recorded blocks cover, as (offset, length) ranges in the order
    /// they were first read; runs that follow on from the one before are joined. What a reader of
    /// the image through the page cache loads ahead of a start (`PageCacheWarmer`): one range
    /// is one request however many blocks it spans.
    public var blockRanges: [(offset: UInt64, length: Int)] {
        var ranges: [(offset: UInt64, length: Int)] = []
        ranges.reserveCapacity(blocks.count)
        for run in blocks {
            let offset = UInt64(run.first) * 4096
            let length = Int(run.count) * 4096
            if let last = ranges.last, last.offset + UInt64(last.length) == offset {
                ranges[ranges.count - 1].length += length
            } else {
                ranges.append((offset: offset, length: length))
            }
        }
        return ranges
    }

    func publicPart() -> [UInt8] {
        var writer = ByteWriter()
        writer.shortString(manifestID)
        writer.u32(UInt32(chunkCount))
        return writer.bytes
    }

    /// The record sealed for `tenant`: only holders of the tenant's key can read the order.
    public func sealed(tenant: Tenant, keys: any TenantKeyProvider) async throws -> [UInt8] {
        var payload = ByteWriter()
        payload.u32(UInt32(chunks.count))
        for index in chunks { payload.u32(index) }
        payload.u32(UInt32(blocks.count))
        for run in blocks {
            payload.u32(run.first)
            payload.u32(run.count)
        }
        return try await SealedObject.seal(kind: .accessRecord, version: Self.formatVersion, publicPart: publicPart(),
                                           payload: payload.bytes, tenant: tenant, keys: keys)
    }

    /// Opens a sealed record and checks it belongs to `manifest`.
    ///
    /// - Throws: `SealError` — `.malformedManifest` when it is truncated, belongs to another
    ///   manifest or holds an index out of range or twice, or a block past the image;
    ///   `.unsupportedVersion`, `.wrongKey`, `.tampered`.
    public static func open(_ bytes: [UInt8], for manifest: ManifestHeader, keys: any TenantKeyProvider,
                            what: String = "access record") async throws -> AccessRecord {
        let parsed = try SealedObject.parse(bytes, expecting: .accessRecord, versions: 1...formatVersion, what: what)
        let expected = AccessRecord(manifestID: manifest.id, chunkCount: manifest.chunkCount, chunks: [])
        guard parsed.publicPart == expected.publicPart() else {
            throw SealError(.malformedManifest, "\(what) does not belong to manifest \(manifest.id)")
        }
        let payload = try await SealedObject.open(parsed, tenant: manifest.tenant, keys: keys, what: what)
        var reader = ByteReader(payload, what: what)
        let count: Int
        if parsed.version == 1 {
            guard payload.count % 4 == 0 else {
                throw SealError(.malformedManifest, "\(what) has a payload of \(payload.count) bytes, not whole chunk indices")
            }
            count = payload.count / 4
        } else {
            count = Int(try malformedOnTruncation { try reader.u32("chunk count") })
            guard count <= manifest.chunkCount else {
                throw SealError(.malformedManifest, "\(what) lists \(count) chunks of a manifest with \(manifest.chunkCount)")
            }
        }
        var seen = Set<UInt32>()
        var chunks: [UInt32] = []
        chunks.reserveCapacity(count)
        for _ in 0..<count {
            let index = try malformedOnTruncation { try reader.u32("chunk index") }
            guard Int(index) < manifest.chunkCount, seen.insert(index).inserted else {
                throw SealError(.malformedManifest, "\(what) lists chunk \(index) out of range or twice (\(manifest.chunkCount) chunks)")
            }
            chunks.append(index)
        }
        var blocks: [BlockRun] = []
        if parsed.version >= 2 {
            let imageBlocks = manifest.imageSize / 4096
            let runCount = Int(try malformedOnTruncation { try reader.u32("block run count") })
            var listed = 0 as UInt64
            for _ in 0..<runCount {
                let first = try malformedOnTruncation { try reader.u32("first block") }
                let length = try malformedOnTruncation { try reader.u32("block count") }
                guard length > 0, UInt64(first) + UInt64(length) <= imageBlocks else {
                    throw SealError(.malformedManifest, "\(what) lists blocks \(first)+\(length), outside the image's \(imageBlocks) blocks")
                }
                listed += UInt64(length)
                guard listed <= imageBlocks else {
                    throw SealError(.malformedManifest, "\(what) lists more blocks than the image has")
                }
                blocks.append(BlockRun(first: first, count: length))
            }
            guard reader.remaining == 0 else {
                throw SealError(.malformedManifest, "\(what) has \(reader.remaining) bytes after its block runs")
            }
        }
        return AccessRecord(manifestID: manifest.id, chunkCount: manifest.chunkCount, chunks: chunks, blocks: blocks)
    }
}
