import CompressNIO
import NIOCore
public import ThawTar

/// Inflates a gzip stream (one or more members) through zlib, by way of compress-nio.
///
/// Reads the compressed stream to its very end so that a digest check upstream sees every byte.
public final class GzipSource: ByteSource {
    private let upstream: any ByteSource
    private var decompressor: ZlibDecompressor
    private var input: ByteBuffer
    private var output: ByteBuffer
    private var upstreamEnded = false
    private var memberEnded = false

    public init(_ upstream: any ByteSource) throws {
        self.upstream = upstream
        do {
            decompressor = try ZlibDecompressor(algorithm: .gzip)
        } catch {
            throw ImageError(.io, "cannot start zlib: \(error)")
        }
        input = ByteBufferAllocator().buffer(capacity: 1 << 18)
        output = ByteBufferAllocator().buffer(capacity: 1 << 18)
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        while true {
            if output.readableBytes > 0 {
                let n = min(buffer.count, output.readableBytes)
                output.withUnsafeReadableBytes { bytes in
                    buffer.baseAddress!.copyMemory(from: bytes.baseAddress!, byteCount: n)
                }
                output.moveReaderIndex(forwardBy: n)
                return n
            }
            if memberEnded {
                // Another member may follow; anything else after the stream is a defect.
                if input.readableBytes < 2 && !upstreamEnded { try refill(); continue }
                if input.readableBytes == 0 && upstreamEnded { return 0 }
                let view = input.readableBytesView
                if view.count >= 2 && view[view.startIndex] == 0x1f && view[view.startIndex + 1] == 0x8b {
                    decompressor = try ZlibDecompressor(algorithm: .gzip)
                    memberEnded = false
                    continue
                }
                if view.allSatisfy({ $0 == 0 }) {
                    // Zero padding after the stream (some writers block-align): skip it.
                    input.clear()
                    if upstreamEnded { return 0 }
                    try refill()
                    continue
                }
                throw ImageError(.corruptCompression, "unexpected data after the end of the gzip stream")
            }
            if input.readableBytes == 0 && !upstreamEnded {
                try refill()
                continue
            }
            output.clear()
            let before = input.readableBytes
            do {
                try decompressor.inflate(from: &input, to: &output)
                // No error means zlib either consumed all input (Z_OK) or reached the end of the
                // member (Z_STREAM_END); input left over, or no progress at all, means the latter.
                if input.readableBytes > 0 || (before == input.readableBytes && output.readableBytes == 0) {
                    memberEnded = true
                }
            } catch let error as CompressNIOError {
                switch error {
                case .bufferOverflow:
                    break  // output full: hand it out
                case .inputBufferOverflow:
                    if upstreamEnded { throw ImageError(.corruptCompression, "gzip stream is truncated") }
                    input.clear()
                default:
                    throw ImageError(.corruptCompression, "gzip data is corrupt (\(error))")
                }
            }
        }
    }

    private func refill() throws {
        input.discardReadBytes()
        let n = try input.writeWithUnsafeMutableBytes(minimumWritableBytes: 1 << 16) { space in
            try upstream.read(into: space)
        }
        if n == 0 { upstreamEnded = true }
    }
}
