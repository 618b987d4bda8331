/// Why a request could not be prepared for signing.
public enum SigningError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The URL has no host, so there is no `Host` header to sign.
    case urlWithoutHost(String)
    /// A payload hash must be 64 hex digits (or one of the literals `PayloadHash` offers).
    case invalidPayloadHash(String)

    public var description: String {
        switch self {
        case .urlWithoutHost(let url):
            "cannot sign a request to \(url): the URL has no host"
        case .invalidPayloadHash(let value):
            "'\(value)' is not a payload hash: expected 64 hex digits of SHA-256"
        }
    }
}
