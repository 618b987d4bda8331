/// A pull-based stream of bytes read in order, such as a file, a decompressor or a tar entry.
///
/// Sources are classes so that one can wrap another (a digest check around a decompressor around
/// a file) without copying state. They are used from one thread at a time.
public protocol ByteSource: AnyObject {
    /// Reads up to `buffer.count` bytes into `buffer`.
    ///
    /// - Returns: the number of bytes read; `0` only at the end of the stream.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int
}

extension ByteSource {
    /// Fills `buffer` completely, or returns how many bytes arrived before the end of the stream.
    public func readFully(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        var filled = 0
        while filled < buffer.count {
            let n = try read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[filled...]))
            if n == 0 { break }
            filled += n
        }
        return filled
    }

    /// Reads and discards everything up to the end of the stream; returns the byte count.
    @discardableResult
    public func drain() throws -> UInt64 {
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 16)
        defer { scratch.deallocate() }
        var total: UInt64 = 0
        while true {
            let n = try read(into: scratch)
            if n == 0 { return total }
            total += UInt64(n)
        }
    }
}

/// A byte source over an array in memory, for small archives and tests.
public final class MemorySource: ByteSource {
    private let bytes: [UInt8]
    private var position = 0

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let n = min(buffer.count, bytes.count - position)
        if n > 0 {
            bytes.withUnsafeBytes { src in
                buffer.baseAddress!.copyMemory(from: src.baseAddress! + position, byteCount: n)
            }
            position += n
        }
        return n
    }
}
