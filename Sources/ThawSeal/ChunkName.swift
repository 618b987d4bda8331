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
    public var description: String { hex }

    public static func < (a: ChunkName, b: ChunkName) -> Bool { a.bytes.lexicographicallyPrecedes(b.bytes) }
}

/// Lowercase hexadecimal, as names and digests are written in store keys and messages.
public enum Hex {
    private static let digits = Array("0123456789abcdef".utf8)

    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.underestimatedCount * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes lowercase or uppercase hex; nil when the text is not an even run of hex digits.
    public static func decode(_ text: some StringProtocol) -> [UInt8]? {
        let utf8 = Array(text.utf8)
        guard utf8.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(utf8.count / 2)
        var index = 0
        while index < utf8.count {
            guard let high = value(utf8[index]), let low = value(utf8[index + 1]) else { return nil }
            out.append(high << 4 | low)
            index += 2
        }
        return out
    }

    private static func value(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
