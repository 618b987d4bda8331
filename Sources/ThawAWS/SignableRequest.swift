public import Foundation

/// The parts of an HTTP request that a Signature Version 4 signature covers.
///
/// The path and query are taken as they go on the wire (percent-encoded, without the `?`).
/// The signer never rewrites them; it derives the canonical forms from them.
public struct SignableRequest: Sendable, Hashable {
    /// One header line. Order and repetition are kept, because a repeated header is signed
    /// as its values joined in the order they were given.
    public struct Header: Sendable, Hashable {
        public var name: String
        public var value: String

        public init(_ name: String, _ value: String) {
            self.name = name
            self.value = value
        }
    }

    public var method: String
    /// The `Host` header value: the host name, with `:port` when the port is not the scheme's default.
    public var host: String
    /// The path as sent, for example `/bucket/a%20b`; empty means `/`.
    public var path: String
    /// The query as sent, without the leading `?`; empty when there is none.
    public var query: String
    public var headers: [Header]

    public init(method: String, host: String, path: String, query: String = "", headers: [Header] = []) {
        self.method = method
        self.host = host
        self.path = path
        self.query = query
        self.headers = headers
    }

    /// Takes host, port, path and query from a URL, keeping the URL's own percent-encoding.
    public init(method: String, url: URL, headers: [Header] = []) throws(SigningError) {
        guard let hostName = url.host(percentEncoded: true), !hostName.isEmpty else {
            throw .urlWithoutHost(url.absoluteString)
        }
        var host = hostName.contains(":") && !hostName.hasPrefix("[") ? "[\(hostName)]" : hostName
        if let port = url.port, port != Self.defaultPort(scheme: url.scheme) {
            host += ":\(port)"
        }
        self.init(
            method: method, host: host, path: url.path(percentEncoded: true),
            query: url.query(percentEncoded: true) ?? "", headers: headers)
    }

    /// The port a client leaves out of `Host`; a signature over `host:443` would not match.
    private static func defaultPort(scheme: String?) -> Int? {
        switch scheme?.lowercased() {
        case "http": 80
        case "https": 443
        default: nil
        }
    }
}
