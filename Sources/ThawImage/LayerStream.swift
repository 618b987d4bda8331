public import ThawTar

/// The uncompressed tar stream of one layer, verified as it is read.
///
/// The blob digest and size are checked when the compressed stream ends, the diff ID when the
/// uncompressed stream ends; ``finish()`` reads any remainder so that both checks always run.
/// Reading the file, inflating and both digests run on a thread of their own (a
/// ``ReadAheadSource``), so the reader's thread is left with what it does with the bytes.
public final class LayerStream: ByteSource {
    public let layer: ImageLayer
    private let uncompressed: ReadAheadSource

    public init(_ layer: ImageLayer) throws {
        self.layer = layer
        do {
            let file = try FileSource(path: layer.path, offset: layer.offset, length: layer.length)
            let blob = DigestingSource(file, expected: layer.blobDigest,
                                       expectedSize: layer.blobSize.map { UInt64($0) }, what: "blob")
            let decompressed: any ByteSource
            switch layer.compression {
            case .none: decompressed = blob
            case .gzip: decompressed = try GzipSource(blob)
            case .zstd: decompressed = try ZstdSource(blob)
            }
            uncompressed = ReadAheadSource(
                DigestingSource(decompressed, expected: layer.diffID, what: "uncompressed layer (diff ID)"))
        } catch var error as ImageError {
            error.layer = layer.label
            throw error
        }
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        do {
            return try uncompressed.read(into: buffer)
        } catch var error as ImageError {
            error.layer = layer.label
            throw error
        }
    }

    /// Reads to the end of the layer, verifying its digests.
    ///
    /// - Returns: the number of uncompressed bytes in the layer.
    @discardableResult
    public func finish() throws -> UInt64 {
        try drain()
        return uncompressed.count
    }

    /// Uncompressed bytes read so far.
    public var uncompressedCount: UInt64 { uncompressed.count }
}
