public import Foundation
import ThawBinary
import Crypto

/// Signs HTTP requests with AWS Signature Version 4 (the `Authorization` header form).
///
/// The signer is pure: the signing time is passed in rather than read from a clock, so the
/// same inputs always give the same signature and tests can replay published vectors.
public struct SignatureV4Signer: Sendable {
    public static let algorithm = "AWS4-HMAC-SHA256"

    public var credentials: AWSCredentials
    public var region: String
    public var service: String
    public var options: SigningOptions

    /// Options default to what `service` expects (S3's rules for `s3`).
    public init(credentials: AWSCredentials, region: String, service: String, options: SigningOptions? = nil) {
        self.credentials = credentials
        self.region = region
        self.service = service
        self.options = options ?? SigningOptions(service: service)
    }

    /// Signs `request` as of `time`.
    ///
    /// Headers the signer sets itself (`Authorization`, `X-Amz-Date`, and `X-Amz-Content-Sha256`
    /// or `X-Amz-Security-Token` when it adds them) are ignored in `request.headers` and replaced,
    /// so re-signing a retried request gives a fresh, consistent signature.
    public func sign(_ request: SignableRequest, payloadHash: PayloadHash, at time: Date) -> RequestSignature {
        let time = SigningTime(time)
        let scope = "\(time.dateStamp)/\(region)/\(service)/aws4_request"
        let plan = HeaderPlan(request: request, payloadHash: payloadHash, time: time,
                              credentials: credentials, options: options)
        let canonicalHeaders = CanonicalHeaders(plan.signed)

        let canonicalRequest = [
            request.method,
            CanonicalURI.make(path: request.path, normalizing: options.normalizesPath,
                              encodingTwice: options.encodesPathTwice),
            CanonicalQuery.make(request.query),
            canonicalHeaders.block,
            canonicalHeaders.signedHeaders,
            payloadHash.value,
        ].joined(separator: "\n")

        let stringToSign = [
            Self.algorithm,
            time.amzDate,
            scope,
            Hex.encode(SHA256.hash(data: Array(canonicalRequest.utf8))),
        ].joined(separator: "\n")

        let key = Self.signingKey(secretAccessKey: credentials.secretAccessKey, dateStamp: time.dateStamp,
                                  region: region, service: service)
        let signature = Hex.encode(Self.hmac(key: key, stringToSign))
        let authorization = "\(Self.algorithm) Credential=\(credentials.accessKeyID)/\(scope), "
            + "SignedHeaders=\(canonicalHeaders.signedHeaders), Signature=\(signature)"

        return RequestSignature(
            canonicalRequest: canonicalRequest, stringToSign: stringToSign, credentialScope: scope,
            signedHeaders: canonicalHeaders.signedHeaders, signature: signature, authorization: authorization,
            headers: plan.added + [SignableRequest.Header("Authorization", authorization)])
    }

    /// The key that signs every request of one day, region and service: HMAC-SHA256 chained
    /// from `"AWS4" + secret` through the date stamp (`YYYYMMDD`), region, service and
    /// `aws4_request`. Exposed because chunked uploads sign each chunk with the same key.
    public static func signingKey(secretAccessKey: String, dateStamp: String, region: String, service: String) -> [UInt8] {
        var key = Array("AWS4\(secretAccessKey)".utf8)
        for element in [dateStamp, region, service, "aws4_request"] {
            key = hmac(key: key, element)
        }
        return key
    }

    private static func hmac(key: [UInt8], _ message: String) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: Array(message.utf8), using: SymmetricKey(data: key)))
    }
}

/// Which headers a signature covers and which the signer adds.
private struct HeaderPlan {
    var signed: [SignableRequest.Header] = []
    var added: [SignableRequest.Header] = []

    init(request: SignableRequest, payloadHash: PayloadHash, time: SigningTime,
         credentials: AWSCredentials, options: SigningOptions) {
        var owned: Set<String> = ["authorization", "x-amz-date"]
        if options.addsContentSHA256Header { owned.insert("x-amz-content-sha256") }
        if credentials.sessionToken != nil { owned.insert("x-amz-security-token") }

        let kept = request.headers.filter { !owned.contains(CanonicalHeaders.canonicalName($0.name)) }
        signed = kept.filter { !options.unsignedHeaderNames.contains(CanonicalHeaders.canonicalName($0.name)) }

        if !kept.contains(where: { CanonicalHeaders.canonicalName($0.name) == "host" }) {
            add(SignableRequest.Header("Host", request.host), signing: true)
        }
        add(SignableRequest.Header("X-Amz-Date", time.amzDate), signing: true)
        if options.addsContentSHA256Header {
            add(SignableRequest.Header("X-Amz-Content-Sha256", payloadHash.value), signing: true)
        }
        if let token = credentials.sessionToken {
            add(SignableRequest.Header("X-Amz-Security-Token", token), signing: options.signsSecurityToken)
        }
    }

    private mutating func add(_ header: SignableRequest.Header, signing: Bool) {
        added.append(header)
        if signing { signed.append(header) }
    }
}
