import ThawBinary
import Crypto

/// A chunk's name: the SHA-256 of its ciphertext. Names are what stores index by, what
/// manifests list in the clear, and what every reader checks the bytes against.
public struct ChunkName: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The 32 digest bytes.
    public let bytes: [UInt8]

    public init(bytes: [UInt8]) throws {
        guard bytes.count == 32 else {
            throw SealError(.invalidValue, "a chunk name is 32 bytes, not \(bytes.count)")
        }
        self.bytes = bytes
    }

    init(unchecked bytes: [UInt8]) { self.bytes = bytes }

    /// Parses 64 lowercase hexadecimal digits.
    public init(hex: some StringProtocol) throws {
        guard let bytes = Hex.decode(hex), bytes.count == 32 else {
            throw SealError(.invalidValue, "'\(hex)' is not a chunk name (64 hexadecimal digits)")
        }
        self.bytes = bytes
    }

    /// The name of `ciphertext`.
    public static func of(_ ciphertext: UnsafeRawBufferPointer) -> ChunkName {
        ChunkName(unchecked: Array(SHA256.hash(data: ciphertext)))
    }

    public static func of(_ ciphertext: [UInt8]) -> ChunkName {
        ciphertext.withUnsafeBytes { of($0) }
    }

    /// Whether `bytes` really are the chunk this name stands for.
    public func matches(_ bytes: [UInt8]) -> Bool { ChunkName.of(bytes) == self }

    public var hex: String { Hex.encode(bytes) }

    /// All 32 bytes in one call: names key every cache and table, and hashing them byte by byte
    /// (the synthesized conformance) costs several times more.
    public func hash(into hasher: inout Hasher) {
        bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
    }
    public var description: String { hex }

    public static func < (a: ChunkName, b: ChunkName) -> Bool { a.bytes.lexicographicallyPrecedes(b.bytes) }
}
