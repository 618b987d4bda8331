import Crypto
import Foundation
import SystemPackage

/// The distinct non-zero chunks of an image file, by SHA-256: what a content-addressed store
/// would hold for it, and how much two images share.
public struct ChunkCensus: Sendable {
    public let chunkSize: UInt64
    /// Digests (as hex) of the non-zero chunks.
    public private(set) var chunks: Set<String> = []
    public private(set) var totalChunks = 0
    public private(set) var zeroChunks = 0

    /// Reads `path` (or the chunk-aligned `range` of it) chunk by chunk.
    public init(path: String, chunkSize: UInt64, range: Range<UInt64>? = nil) throws {
        self.chunkSize = chunkSize
        let descriptor = try FileDescriptor.open(FilePath(path), .readOnly)
        defer { try? descriptor.close() }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(chunkSize), alignment: 4096)
        defer { buffer.deallocate() }
        var offset = Int64(range?.lowerBound ?? 0)
        let end = range.map { Int64($0.upperBound) } ?? Int64.max
        while offset < end {
            var filled = 0
            let want = Int(min(Int64(buffer.count), end - offset))
            while filled < want {
                let n = try descriptor.read(fromAbsoluteOffset: offset + Int64(filled), into: UnsafeMutableRawBufferPointer(rebasing: buffer[filled..<want]))
                if n == 0 { break }
                filled += n
            }
            if filled == 0 { break }
            let chunk = UnsafeRawBufferPointer(rebasing: buffer[0..<filled])
            totalChunks += 1
            if chunk.allSatisfy({ $0 == 0 }) {
                zeroChunks += 1
            } else {
                chunks.insert(SHA256.hash(data: chunk).map { String(format: "%02x", $0) }.joined())
            }
            offset += Int64(filled)
        }
    }

    /// Chunks present in both images.
    public func shared(with other: ChunkCensus) -> Int { chunks.intersection(other.chunks).count }
}
