import CZstd
public import ThawTar

/// Decompresses a zstd stream (one or more frames) through libzstd's streaming API.
public final class ZstdSource: ByteSource {
    private let upstream: any ByteSource
    private let stream: OpaquePointer
    private let inputBuffer: UnsafeMutableRawBufferPointer
    private var input = ZSTD_inBuffer(src: nil, size: 0, pos: 0)
    private var upstreamEnded = false
    /// Non-zero while a frame is incomplete (libzstd's hint of bytes still expected).
    private var pending: Int = 0
    private var sawInput = false
    /// True when the last call filled the caller's buffer: libzstd may hold more output.
    private var mayHoldOutput = false

    public init(_ upstream: any ByteSource) throws {
        self.upstream = upstream
        guard let stream = ZSTD_createDStream() else { throw ImageError(.io, "cannot create a zstd stream") }
        self.stream = stream
        ZSTD_initDStream(stream)
        inputBuffer = .allocate(byteCount: ZSTD_DStreamInSize(), alignment: 16)
        input = ZSTD_inBuffer(src: UnsafeRawPointer(inputBuffer.baseAddress!), size: 0, pos: 0)
    }

    deinit {
        ZSTD_freeDStream(stream)
        inputBuffer.deallocate()
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard buffer.count > 0 else { return 0 }
        while true {
            if input.pos == input.size && !mayHoldOutput {
                if upstreamEnded {
                    if pending != 0 || !sawInput { throw ImageError(.corruptCompression, "zstd stream is truncated") }
                    return 0
                }
                let n = try upstream.read(into: inputBuffer)
                if n == 0 { upstreamEnded = true; continue }
                sawInput = true
                input.size = n
                input.pos = 0
            }
            var output = ZSTD_outBuffer(dst: buffer.baseAddress, size: buffer.count, pos: 0)
            let result = ZSTD_decompressStream(stream, &output, &input)
            if ZSTD_isError(result) != 0 {
                throw ImageError(.corruptCompression, "zstd data is corrupt (\(String(cString: ZSTD_getErrorName(result))))")
            }
            pending = result
            mayHoldOutput = output.pos == output.size
            if output.pos > 0 { return output.pos }
        }
    }
}
