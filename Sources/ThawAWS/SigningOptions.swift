/// The choices in which services differ when they check a signature.
public struct SigningOptions: Sendable, Hashable {
    /// Remove `.`, `..` and empty path segments before signing. Every service but S3 does;
    /// S3 object keys may contain them literally.
    public var normalizesPath: Bool
    /// Escape the path as sent a second time (`%20` becomes `%2520`). Every service but S3
    /// expects this; S3 expects the object key escaped exactly once.
    public var encodesPathTwice: Bool
    /// Send and sign `X-Amz-Content-Sha256`. S3 requires it; other services ignore it.
    public var addsContentSHA256Header: Bool
    /// Sign `X-Amz-Security-Token` rather than only sending it. S3 and most services require
    /// this; a few older services want the token added after signing.
    public var signsSecurityToken: Bool
    /// Lowercase names of headers that are sent but never signed, because something between
    /// client and service may legitimately add, drop or rewrite them.
    public var unsignedHeaderNames: Set<String>

    public init(
        normalizesPath: Bool, encodesPathTwice: Bool, addsContentSHA256Header: Bool,
        signsSecurityToken: Bool = true, unsignedHeaderNames: Set<String> = Self.defaultUnsignedHeaderNames
    ) {
        self.normalizesPath = normalizesPath
        self.encodesPathTwice = encodesPathTwice
        self.addsContentSHA256Header = addsContentSHA256Header
        self.signsSecurityToken = signsSecurityToken
        self.unsignedHeaderNames = Set(unsignedHeaderNames.map { $0.lowercased() })
    }

    /// What the service expects: S3's rules for `s3`, the general rules for every other name.
    public init(service: String) {
        let isS3 = service == "s3"
        self.init(normalizesPath: !isS3, encodesPathTwice: !isS3, addsContentSHA256Header: isS3)
    }

    /// Hop-by-hop headers that proxies rewrite, plus the ones clients and tracers add on their own.
    public static let defaultUnsignedHeaderNames: Set<String> = [
        "connection", "expect", "keep-alive", "proxy-authorization", "proxy-connection",
        "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "x-amzn-trace-id",
    ]
}
