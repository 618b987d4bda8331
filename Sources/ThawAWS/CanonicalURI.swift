/// The second line of the canonical request: the request path, encoded per segment.
///
/// Two switches come from `SigningOptions`, because S3 differs from every other service:
/// - normalising removes `.` and `..` segments and empty segments; S3 object keys may contain
///   `//` or `..` literally, so S3 must see the path untouched;
/// - encoding twice escapes the path as it is sent on the wire (already escaped once), so `%20`
///   becomes `%2520`; S3 instead expects the object key escaped exactly once, so there each
///   segment is decoded and escaped again, which turns `a b`, `a%20b` and `a%20b` alike into `a%20b`.
enum CanonicalURI {
    static func make(path: String, normalizing: Bool, encodingTwice: Bool) -> String {
        var path = path.isEmpty ? "/" : path
        if !path.hasPrefix("/") { path = "/" + path }
        if normalizing { path = removingDotAndEmptySegments(path) }
        let segments = path.split(separator: "/", omittingEmptySubsequences: false)
        let encoded = segments.map { segment in
            encodingTwice ? URIEncoding.encode(segment) : URIEncoding.reencode(segment)
        }
        return encoded.joined(separator: "/")
    }

    /// Resolves `.` and `..` as RFC 3986 does and collapses repeated slashes.
    ///
    /// A path that ends in a slash, `.` or `..` names a directory and keeps its trailing slash
    /// (`/a/b/..` is `/a/`); `..` above the root stays at the root.
    static func removingDotAndEmptySegments(_ path: String) -> String {
        var kept: [Substring] = []
        var endsAsDirectory = false
        for segment in path.split(separator: "/", omittingEmptySubsequences: true) {
            switch segment {
            case ".":
                endsAsDirectory = true
            case "..":
                _ = kept.popLast()
                endsAsDirectory = true
            default:
                kept.append(segment)
                endsAsDirectory = false
            }
        }
        if path.hasSuffix("/") { endsAsDirectory = true }
        guard !kept.isEmpty else { return "/" }
        return "/" + kept.joined(separator: "/") + (endsAsDirectory ? "/" : "")
    }
}
