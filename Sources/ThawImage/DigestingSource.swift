import Crypto
public import ThawTar

/// Passes bytes through while hashing them; at the end of the stream checks the SHA-256 and,
/// when given, the length against what a descriptor or config promised.
public final class DigestingSource: ByteSource {
    private let upstream: any ByteSource
    private var hasher = SHA256()
    private let expected: Digest?
    private let expectedSize: UInt64?
    private let what: String
    public private(set) var count: UInt64 = 0
    /// The digest of everything read, once the end of the stream was reached.
    public private(set) var digest: Digest?

    /// - Parameters:
    ///   - what: names the stream in errors ("blob", "uncompressed layer").
    public init(_ upstream: any ByteSource, expected: Digest?, expectedSize: UInt64? = nil, what: String) {
        self.upstream = upstream
        self.expected = expected
        self.expectedSize = expectedSize
        self.what = what
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        if digest != nil { return 0 }
        let n = try upstream.read(into: buffer)
        if n > 0 {
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            count += UInt64(n)
            if let expectedSize, count > expectedSize {
                throw ImageError(.sizeMismatch, "\(what) is longer than the \(expectedSize) bytes its descriptor gives")
            }
            return n
        }
        let actual = Digest(hasher.finalize())
        digest = actual
        if let expectedSize, count != expectedSize {
            throw ImageError(.sizeMismatch, "\(what) has \(count) bytes, its descriptor gives \(expectedSize)")
        }
        if let expected, actual != expected {
            throw ImageError(.digestMismatch, "\(what) digest is \(actual), expected \(expected)")
        }
        return 0
    }
}
