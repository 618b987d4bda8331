import Foundation
import Testing
import ThawAWS

/// Canonicalisation cases the published vectors do not reach: S3's path rules, escaping of
/// reserved characters, query sorting and header whitespace.
@Suite struct CanonicalRequestTests {
    static let credentials = AWSCredentials(accessKeyID: "AKID", secretAccessKey: "secret")
    static let time = Date(timeIntervalSince1970: 1_440_938_160)

    /// The canonical request's lines: 0 method, 1 path, 2 query, then headers.
    static func lines(
        path: String = "/", query: String = "", headers: [SignableRequest.Header] = [],
        service: String = "service", options: SigningOptions? = nil
    ) -> [Substring] {
        let signer = SignatureV4Signer(credentials: credentials, region: "us-east-1", service: service, options: options)
        let request = SignableRequest(method: "GET", host: "example.com", path: path, query: query, headers: headers)
        return signer.sign(request, payloadHash: .emptyBody, at: time).canonicalRequest
            .split(separator: "\n", omittingEmptySubsequences: false)
    }

    static func canonicalPath(_ path: String, service: String) -> String {
        String(lines(path: path, service: service)[1])
    }

    static func canonicalQuery(_ query: String) -> String {
        String(lines(query: query)[2])
    }

    // MARK: Path

    @Test(arguments: [
        ("/bucket//a/./b/../c", "/bucket//a/./b/../c"),  // S3 keys keep dots and empty segments
        ("/test$file.text", "/test%24file.text"),
        ("/a b/c+d", "/a%20b/c%2Bd"),
        ("/a%20b/c%2bd", "/a%20b/c%2Bd"),  // already escaped: escaped once, not twice
        ("/caf\u{E9}", "/caf%C3%A9"),
        ("/100%", "/100%25"),  // a lone percent sign is a literal one
        ("/-._~", "/-._~"),
        ("/a:b@c!d*e(f)g'h", "/a%3Ab%40c%21d%2Ae%28f%29g%27h"),
        ("", "/"),
        ("key", "/key"),
    ])
    func s3PathIsEscapedOnceAndNotNormalized(path: String, expected: String) {
        #expect(Self.canonicalPath(path, service: "s3") == expected)
    }

    @Test(arguments: [
        ("/a%20b", "/a%2520b"),  // the escaped wire form is escaped again
        ("/a b", "/a%20b"),
        ("/a/b/..", "/a/"),
        ("/a/./b", "/a/b"),
        ("/../a", "/a"),
        ("//a//b//", "/a/b/"),
        ("/a/b/.", "/a/b/"),
        ("", "/"),
    ])
    func otherServicesNormalizeAndEscapeTwice(path: String, expected: String) {
        #expect(Self.canonicalPath(path, service: "service") == expected)
    }

    @Test func pathFlagsWorkIndependently() {
        let normalizeOnly = SigningOptions(normalizesPath: true, encodesPathTwice: false, addsContentSHA256Header: false)
        #expect(Self.lines(path: "/a/../b%20c", options: normalizeOnly)[1] == "/b%20c")
        let escapeTwiceOnly = SigningOptions(normalizesPath: false, encodesPathTwice: true, addsContentSHA256Header: false)
        #expect(Self.lines(path: "/a/../b%20c", options: escapeTwiceOnly)[1] == "/a/../b%2520c")
    }

    // MARK: Query

    @Test(arguments: [
        ("b=2&a=1", "a=1&b=2"),
        ("a=2&a=10&a=1", "a=1&a=10&a=2"),  // values sort as text, not numbers
        ("b=1&B=1&_=1", "B=1&_=1&b=1"),  // byte order: uppercase, underscore, lowercase
        ("lifecycle", "lifecycle="),
        ("a=", "a="),
        ("a=b=c", "a=b%3Dc"),
        ("x=%2f", "x=%2F"),
        ("x=a+b", "x=a%2Bb"),
        ("x=a%20b", "x=a%20b"),
        ("x=a b", "x=a%20b"),
        ("&&a=1&", "a=1"),
        ("prefix=chunks/ab&list-type=2", "list-type=2&prefix=chunks%2Fab"),
        ("", ""),
    ])
    func queryIsEscapedAndSorted(query: String, expected: String) {
        #expect(Self.canonicalQuery(query) == expected)
    }

    // MARK: Headers

    @Test func headerNamesAreLowercasedAndValuesTrimmedAndCollapsed() {
        let lines = Self.lines(headers: [
            .init(" X-Custom ", "\t a \t  b   c  "),
            .init("X-Empty", ""),
            .init("x-custom", "second"),
        ])
        #expect(lines.contains("x-custom:a b c,second"))
        #expect(lines.contains("x-empty:"))
        #expect(lines[lines.count - 2] == "host;x-amz-date;x-custom;x-empty")
    }

    @Test func unsignedHeadersAreLeftOutOfTheSignature() {
        let lines = Self.lines(headers: [.init("User-Agent", "thaw"), .init("Transfer-Encoding", "chunked")])
        #expect(!lines.contains { $0.hasPrefix("user-agent") || $0.hasPrefix("transfer-encoding") })
        #expect(lines[lines.count - 2] == "host;x-amz-date")

        var options = SigningOptions(service: "service")
        options.unsignedHeaderNames = []
        let signed = Self.lines(headers: [.init("User-Agent", "thaw")], options: options)
        #expect(signed[signed.count - 2] == "host;user-agent;x-amz-date")
    }
}
