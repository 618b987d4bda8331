import ThawBinary
import Crypto

/// The last line of the canonical request: the hex SHA-256 of the body, or `UNSIGNED-PAYLOAD`.
///
/// The caller supplies it rather than the body itself: an upload usually knows its payload's
/// hash already (a chunk is named by it), and hashing a large body twice would be waste.
public struct PayloadHash: Sendable, Hashable, CustomStringConvertible {
    /// The value as it appears in the canonical request and in `X-Amz-Content-Sha256`.
    public let value: String

    /// Leaves the body out of the signature; S3 accepts this over TLS.
    public static let unsigned = PayloadHash(verbatim: "UNSIGNED-PAYLOAD")

    /// The hash of an empty body, for GET, HEAD and DELETE.
    public static let emptyBody = PayloadHash(
        verbatim: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")

    /// A hash computed elsewhere, as 64 hex digits; uppercase digits are accepted and lowercased,
    /// because AWS compares the lowercase form.
    public init(sha256Hex: String) throws(SigningError) {
        guard sha256Hex.utf8.count == 64, Hex.decode(sha256Hex) != nil else {
            throw .invalidPayloadHash(sha256Hex)
        }
        self.init(verbatim: sha256Hex.lowercased())
    }

    /// Hashes a body held in memory.
    public static func sha256(of body: [UInt8]) -> PayloadHash {
        PayloadHash(verbatim: Hex.encode(SHA256.hash(data: body)))
    }

    private init(verbatim: String) {
        value = verbatim
    }

    public var description: String { value }
}
