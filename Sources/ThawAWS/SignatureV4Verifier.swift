public import Foundation

/// Checks AWS Signature Version 4 on requests a Thaw service receives (the `Authorization`
/// header form), the way AWS services do, and fails with the error codes and messages they
/// send, so AWS clients report a bad key or a bad signature as they would against AWS.
///
/// The signature is computed again with `SignatureV4Signer` over exactly the headers the
/// client listed as signed, the path and query as they came on the wire, and the body's
/// SHA-256, at the time the request gives in `X-Amz-Date`; that time must be within
/// `allowedSkew` of the service's clock. Pure, like the signer: the clock is passed in.
public struct SignatureV4Verifier: Sendable {
    /// Secret access keys by access key id.
    public var secrets: [String: String]
    public var region: String
    public var service: String
    /// How far `X-Amz-Date` may be from the service's clock (AWS allows five minutes).
    public var allowedSkew: TimeInterval = 300

    public init(secrets: [String: String], region: String, service: String) {
        self.secrets = secrets
        self.region = region
        self.service = service
    }

    /// Why a request was refused: `code` is what AWS puts in `x-amzn-ErrorType`, `message` the
    /// body's message, `status` the HTTP status (403 for all of them).
    public struct Failure: Error, Sendable, Equatable, CustomStringConvertible {
        public enum Code: String, Sendable {
            case missingAuthenticationToken = "MissingAuthenticationTokenException"
            case incompleteSignature = "IncompleteSignatureException"
            case unrecognizedClient = "UnrecognizedClientException"
            case invalidSignature = "InvalidSignatureException"
        }
        public let code: Code
        public let message: String
        public var status: Int { 403 }

        public init(code: Code, message: String) {
            self.code = code
            self.message = message
        }
        public var description: String { "\(code.rawValue): \(message)" }
    }

    /// The access key id that signed the request, once its signature checks.
    ///
    /// - Parameters:
    ///   - headers: every header of the request, as received.
    ///   - path: the path as received, percent-encoding kept.
    ///   - query: the query as received, without `?`.
    /// - Throws: `Failure` naming what is wrong, as AWS would.
    public func verify(method: String, path: String, query: String, headers: [SignableRequest.Header], body: [UInt8],
                       now: Date) throws(Failure) -> String {
        func header(_ name: String) -> String? { headers.first { $0.name.lowercased() == name }?.value }
        guard let authorization = header("authorization") else {
            throw Failure(code: .missingAuthenticationToken, message: "Missing Authentication Token")
        }
        let parsed = try Self.parse(authorization)
        let scope = parsed.credential.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard scope.count == 5, scope[4] == "aws4_request" else {
            throw Failure(code: .incompleteSignature, message: "Credential should be scoped to a valid region, not '\(parsed.credential)'. ")
        }
        let (accessKey, dateStamp, scopeRegion, scopeService) = (scope[0], scope[1], scope[2], scope[3])
        guard let secret = secrets[accessKey], header("x-amz-security-token") == nil else {
            throw Failure(code: .unrecognizedClient, message: "The security token included in the request is invalid.")
        }
        guard scopeRegion == region else {
            throw Failure(code: .invalidSignature, message: "Credential should be scoped to a valid region, not '\(scopeRegion)'. ")
        }
        guard scopeService == service else {
            throw Failure(code: .invalidSignature, message: "Credential should be scoped to correct service: '\(service)'. ")
        }
        guard let amzDate = header("x-amz-date"), let signedAt = Self.date(amzDate) else {
            throw Failure(code: .incompleteSignature, message: "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
        }
        guard SigningTime(signedAt).dateStamp == dateStamp else {
            throw Failure(code: .invalidSignature, message: "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '\(dateStamp)' != '\(amzDate.prefix(8))', from '\(amzDate)'.")
        }
        guard abs(signedAt.timeIntervalSince(now)) <= allowedSkew else {
            let earliest = SigningTime(now.addingTimeInterval(-allowedSkew)).amzDate
            throw Failure(code: .invalidSignature, message: signedAt < now
                ? "Signature expired: \(amzDate) is now earlier than \(earliest) (\(SigningTime(now).amzDate) - 5 min.)"
                : "Signature not yet current: \(amzDate) is still later than \(SigningTime(now.addingTimeInterval(allowedSkew)).amzDate) (\(SigningTime(now).amzDate) + 5 min.)")
        }
        let signedNames = Set(parsed.signedHeaders.split(separator: ";").map(String.init))
        guard signedNames.contains("host") else {
            throw Failure(code: .invalidSignature, message: "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
        }
        let signed = headers.filter { signedNames.contains($0.name.lowercased()) && $0.name.lowercased() != "x-amz-date" }
        let request = SignableRequest(method: method, host: header("host") ?? "", path: path, query: query, headers: signed)
        var options = SigningOptions(service: service)
        options.unsignedHeaderNames = []
        options.addsContentSHA256Header = false
        let signer = SignatureV4Signer(credentials: AWSCredentials(accessKeyID: accessKey, secretAccessKey: secret),
                                       region: region, service: service, options: options)
        let expected = signer.sign(request, payloadHash: .sha256(of: body), at: signedAt)
        guard expected.signedHeaders == parsed.signedHeaders, Self.constantTimeEqual(expected.signature, parsed.signature) else {
            throw Failure(code: .invalidSignature, message: "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.")
        }
        return accessKey
    }

    struct Authorization {
        var credential: String
        var signedHeaders: String
        var signature: String
    }

    /// `AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
    static func parse(_ value: String) throws(Failure) -> Authorization {
        let prefix = SignatureV4Signer.algorithm + " "
        guard value.hasPrefix(prefix) else {
            throw Failure(code: .incompleteSignature, message: "Authorization header requires '\(SignatureV4Signer.algorithm)' as its algorithm.")
        }
        var fields: [String: String] = [:]
        for part in value.dropFirst(prefix.count).split(separator: ",") {
            let pair = part.trimmingCharacters(in: .whitespaces)
            guard let equals = pair.firstIndex(of: "=") else { continue }
            fields[String(pair[..<equals])] = String(pair[pair.index(after: equals)...])
        }
        let missing = ["Credential", "SignedHeaders", "Signature"].filter { fields[$0] == nil }
        guard missing.isEmpty else {
            throw Failure(code: .incompleteSignature, message: missing.map { "Authorization header requires '\($0)' parameter." }.joined(separator: " ")
                + " Authorization=\(value)")
        }
        return Authorization(credential: fields["Credential"]!, signedHeaders: fields["SignedHeaders"]!, signature: fields["Signature"]!)
    }

    /// `YYYYMMDDTHHMMSSZ` as a date, or nil.
    static func date(_ text: String) -> Date? {
        let digits = Array(text.utf8)
        guard digits.count == 16, digits[8] == UInt8(ascii: "T"), digits[15] == UInt8(ascii: "Z") else { return nil }
        func number(_ range: Range<Int>) -> Int? { Int(String(decoding: digits[range], as: UTF8.self)) }
        guard let year = number(0..<4), let month = number(4..<6), let day = number(6..<8),
              let hour = number(9..<11), let minute = number(11..<13), let second = number(13..<15) else { return nil }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(secondsFromGMT: 0)!
        let components = DateComponents(year: year, month: month, day: day, hour: hour, minute: minute, second: second)
        guard let date = calendar.date(from: components), SigningTime(date).amzDate == text else { return nil }
        return date
    }

    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        return zip(x, y).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}
