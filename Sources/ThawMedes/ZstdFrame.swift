import CZstd

/// One-shot zstd compression of a small buffer into a single frame, and its bounded reverse:
/// what a `ChunkDelta` keeps its pages in. A thin layer over libzstd's simple API (Debian's
/// libzstd-dev); the level is fixed, so equal input gives an equal frame and convergent names
/// of deltas still deduplicate.
public enum ZstdFrame {
    /// zstd's level 3, its default: about 38% of the input on guest memory in 64 KiB pieces,
    /// against 39% at level 1 and far slower levels above.
    public static let level: Int32 = 3

    /// Why a frame could not be decompressed.
    public struct DecompressionError: Error, Sendable, CustomStringConvertible {
        public let description: String
    }

    public static func compress(_ input: [UInt8]) -> [UInt8] {
        let bound = ZSTD_compressBound(input.count)
        var output = [UInt8](repeating: 0, count: bound)
        let written = output.withUnsafeMutableBytes { out in
            input.withUnsafeBytes { source in
                ZSTD_compress(out.baseAddress, bound, source.baseAddress, input.count, level)
            }
        }
        // Compressing into a buffer of ZSTD_compressBound bytes cannot fail but for memory.
        precondition(ZSTD_isError(written) == 0, "zstd compression failed: \(String(cString: ZSTD_getErrorName(written)))")
        output.removeLast(bound - written)
        return output
    }

    /// The content of one frame that declares its size, at most `limit` bytes.
    ///
    /// - Throws: `DecompressionError` when it is not a whole zstd frame, does not declare its
    ///   size, declares more than `limit`, or does not decompress to what it declares.
    public static func decompress(_ frame: [UInt8], limit: Int) throws(DecompressionError) -> [UInt8] {
        let declared = frame.withUnsafeBytes { ZSTD_getFrameContentSize($0.baseAddress, frame.count) }
        // ZSTD_CONTENTSIZE_UNKNOWN and ZSTD_CONTENTSIZE_ERROR are the two largest values.
        guard declared < UInt64.max - 1 else {
            throw DecompressionError(description: "are not a zstd frame that declares its size")
        }
        guard declared <= UInt64(limit) else {
            throw DecompressionError(description: "declare \(declared) bytes, more than the \(limit) they can hold")
        }
        let size = Int(declared)
        var output = [UInt8](repeating: 0, count: size)
        let written = output.withUnsafeMutableBytes { out in
            frame.withUnsafeBytes { source in
                ZSTD_decompress(out.baseAddress, size, source.baseAddress, frame.count)
            }
        }
        guard ZSTD_isError(written) == 0 else {
            throw DecompressionError(description: "do not decompress: \(String(cString: ZSTD_getErrorName(written)))")
        }
        guard written == size else {
            throw DecompressionError(description: "decompress to \(written) bytes, not the \(size) they declare")
        }
        return output
    }
}
