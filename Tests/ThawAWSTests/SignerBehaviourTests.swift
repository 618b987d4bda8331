import Foundation
import Testing
import ThawAWS

/// What the signer adds, replaces and refuses.
@Suite struct SignerBehaviourTests {
    static let credentials = AWSCredentials(accessKeyID: "AKID", secretAccessKey: "secret")
    static let time = Date(timeIntervalSince1970: 1_440_938_160)

    static func sign(
        _ request: SignableRequest, service: String = "s3", credentials: AWSCredentials = credentials,
        payloadHash: PayloadHash = .emptyBody, at time: Date = time
    ) -> RequestSignature {
        SignatureV4Signer(credentials: credentials, region: "eu-west-1", service: service)
            .sign(request, payloadHash: payloadHash, at: time)
    }

    static func value(_ name: String, in signature: RequestSignature) -> String? {
        signature.headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    // MARK: Host from URLs

    @Test(arguments: [
        ("http://localhost:9000/bucket/key", "localhost:9000", "/bucket/key", ""),
        ("https://s3.amazonaws.com:443/b?list-type=2", "s3.amazonaws.com", "/b", "list-type=2"),
        ("http://minio:80/", "minio", "/", ""),
        ("https://minio:80/", "minio:80", "/", ""),
        ("http://[::1]:9000/b", "[::1]:9000", "/b", ""),
        ("https://example.com", "example.com", "", ""),
        ("https://example.com/a%20b?x=%2F", "example.com", "/a%20b", "x=%2F"),
    ])
    func requestFromURLKeepsTheWireForm(url: String, host: String, path: String, query: String) throws {
        let request = try SignableRequest(method: "GET", url: try #require(URL(string: url)))
        #expect(request.host == host)
        #expect(request.path == path)
        #expect(request.query == query)
        #expect(Self.value("Host", in: Self.sign(request)) == host)
    }

    @Test func urlWithoutHostIsRejected() throws {
        let url = try #require(URL(string: "file:///tmp/x"))
        #expect(throws: SigningError.urlWithoutHost("file:///tmp/x")) {
            try SignableRequest(method: "GET", url: url)
        }
    }

    @Test func callerHostIsKeptAndSigned() {
        let request = SignableRequest(method: "GET", host: "ignored", path: "/", headers: [.init("host", "proxy.local")])
        let signature = Self.sign(request)
        #expect(Self.value("Host", in: signature) == nil)
        #expect(signature.canonicalRequest.contains("\nhost:proxy.local\n"))
    }

    // MARK: Headers the signer owns

    @Test func s3GetsTheContentHashHeaderAndOtherServicesDoNot() {
        let request = SignableRequest(method: "GET", host: "h", path: "/")
        let s3 = Self.sign(request, service: "s3", payloadHash: .unsigned)
        #expect(Self.value("X-Amz-Content-Sha256", in: s3) == "UNSIGNED-PAYLOAD")
        #expect(s3.signedHeaders == "host;x-amz-content-sha256;x-amz-date")
        #expect(s3.canonicalRequest.hasSuffix("\nUNSIGNED-PAYLOAD"))

        let other = Self.sign(request, service: "sts")
        #expect(Self.value("X-Amz-Content-Sha256", in: other) == nil)
        #expect(other.signedHeaders == "host;x-amz-date")
    }

    @Test func staleSigningHeadersAreReplaced() {
        let request = SignableRequest(method: "GET", host: "h", path: "/", headers: [
            .init("authorization", "AWS4-HMAC-SHA256 stale"),
            .init("X-AMZ-DATE", "19990101T000000Z"),
            .init("x-amz-content-sha256", "0000"),
        ])
        let signature = Self.sign(request)
        #expect(!signature.canonicalRequest.contains("19990101"))
        #expect(!signature.canonicalRequest.contains("stale"))
        #expect(!signature.canonicalRequest.contains("x-amz-content-sha256:0000"))
        let sent = signature.applied(to: request.headers)
        #expect(sent.filter { $0.name.lowercased() == "authorization" } == [.init("Authorization", signature.authorization)])
        #expect(sent.filter { $0.name.lowercased() == "x-amz-date" } == [.init("X-Amz-Date", "20150830T123600Z")])
        #expect(sent.count == signature.headers.count)
    }

    @Test func sessionTokenIsSentAndSignedByDefault() {
        let credentials = AWSCredentials(accessKeyID: "AKID", secretAccessKey: "secret", sessionToken: "token/+=")
        let signature = Self.sign(SignableRequest(method: "GET", host: "h", path: "/"), credentials: credentials)
        #expect(Self.value("X-Amz-Security-Token", in: signature) == "token/+=")
        #expect(signature.signedHeaders == "host;x-amz-content-sha256;x-amz-date;x-amz-security-token")
        #expect(signature.canonicalRequest.contains("\nx-amz-security-token:token/+=\n"))
    }

    @Test func withoutATokenNoTokenHeaderIsAdded() {
        let signature = Self.sign(SignableRequest(method: "GET", host: "h", path: "/"))
        #expect(Self.value("X-Amz-Security-Token", in: signature) == nil)
        #expect(!signature.signedHeaders.contains("token"))
    }

    // MARK: Time

    /// The signing time is rendered in UTC and truncated to the second.
    @Test(arguments: [
        (1_709_251_199.9, "20240229T235959Z", "20240229"),
        (0, "19700101T000000Z", "19700101"),
        (1_440_938_160, "20150830T123600Z", "20150830"),
    ])
    func signingTimeIsRenderedInUTC(seconds: Double, amzDate: String, day: String) {
        let signature = Self.sign(SignableRequest(method: "GET", host: "h", path: "/"),
                                  at: Date(timeIntervalSince1970: seconds))
        #expect(Self.value("X-Amz-Date", in: signature) == amzDate)
        #expect(signature.credentialScope == "\(day)/eu-west-1/s3/aws4_request")
        #expect(signature.stringToSign.hasPrefix("AWS4-HMAC-SHA256\n\(amzDate)\n\(day)/eu-west-1/s3/aws4_request\n"))
    }

    @Test func everyInputChangesTheSignature() {
        let request = SignableRequest(method: "GET", host: "h", path: "/k")
        let base = Self.sign(request).signature
        #expect(Self.sign(request, at: Self.time.addingTimeInterval(1)).signature != base)
        #expect(Self.sign(request, payloadHash: .unsigned).signature != base)
        #expect(Self.sign(SignableRequest(method: "PUT", host: "h", path: "/k")).signature != base)
        #expect(Self.sign(request, credentials: AWSCredentials(accessKeyID: "AKID", secretAccessKey: "other"))
            .signature != base)
        let otherRegion = SignatureV4Signer(credentials: Self.credentials, region: "us-east-1", service: "s3")
            .sign(request, payloadHash: .emptyBody, at: Self.time)
        #expect(otherRegion.signature != base)
    }

    // MARK: Payload hashes

    @Test func payloadHashesAreValidated() throws {
        #expect(PayloadHash.sha256(of: []) == .emptyBody)
        let upper = try PayloadHash(sha256Hex: String(repeating: "AB", count: 32))
        #expect(upper.value == String(repeating: "ab", count: 32))
        for bad in ["", "abc", String(repeating: "g", count: 64), String(repeating: "a", count: 65), "UNSIGNED-PAYLOAD"] {
            #expect(throws: SigningError.invalidPayloadHash(bad)) { try PayloadHash(sha256Hex: bad) }
        }
    }

    // MARK: Secrets

    @Test func credentialsNeverPrintTheirSecrets() {
        let credentials = AWSCredentials(accessKeyID: "AKIDVISIBLE", secretAccessKey: "SECRETVALUE", sessionToken: "TOKENVALUE")
        var dumped = ""
        dump(credentials, to: &dumped)
        for text in [String(describing: credentials), String(reflecting: credentials), "\(credentials)", dumped] {
            #expect(text.contains("AKIDVISIBLE"))
            #expect(!text.contains("SECRETVALUE"))
            #expect(!text.contains("TOKENVALUE"))
        }
    }
}
