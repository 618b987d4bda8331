import Crypto

/// A content digest as OCI writes it: `sha256:` followed by 64 lowercase hex digits.
public struct Digest: Hashable, Sendable, CustomStringConvertible, Codable {
    /// The 64 hex digits.
    public let hex: String

    public init(parsing text: String) throws {
        guard text.hasPrefix("sha256:") else {
            throw ImageError(.invalidImage, "digest '\(text)' is not a sha256 digest")
        }
        let hex = String(text.dropFirst(7))
        guard hex.utf8.count == 64, hex.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }) else {
            throw ImageError(.invalidImage, "digest '\(text)' is not 64 lowercase hex digits")
        }
        self.hex = hex
    }

    init(_ digest: SHA256.Digest) {
        self.hex = digest.map { byte in
            let s = String(byte, radix: 16)
            return byte < 16 ? "0" + s : s
        }.joined()
    }

    /// The digest of `bytes`.
    public static func of(_ bytes: [UInt8]) -> Digest { Digest(SHA256.hash(data: bytes)) }

    /// The 32 raw bytes.
    public var bytes: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(32)
        var iterator = hex.utf8.makeIterator()
        func nibble(_ c: UInt8) -> UInt8 { c <= 57 ? c - 48 : c - 87 }
        while let high = iterator.next(), let low = iterator.next() {
            out.append(nibble(high) << 4 | nibble(low))
        }
        return out
    }

    public var description: String { "sha256:" + hex }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        try self.init(parsing: text)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
