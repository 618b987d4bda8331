import Foundation
import Testing
import ThawAWS
import ThawTestSupport

/// Requests signed by Thaw's signer and by botocore (the AWS CLI's and boto3's signer) pass
/// the verifier; every change to them, a wrong or unknown key, a stale date and a missing
/// signature fail with the error AWS gives.
@Suite struct SignatureV4VerifierTests {
    static let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    static let verifier = SignatureV4Verifier(secrets: ["AKIDTHAWEXAMPLE": secret], region: "us-east-1", service: "lambda")
    static let signedAt = Date(timeIntervalSince1970: 1_796_000_000)
    static let body = Array(#"{"n": 7}"#.utf8)
    static let path = "/2015-03-31/functions/my-fn%3Alive/invocations"

    /// A request signed by `SignatureV4Signer` for `secret`, as its headers go on the wire.
    static func signed(secret: String = secret, body: [UInt8] = body) -> [SignableRequest.Header] {
        let request = SignableRequest(method: "POST", host: "127.0.0.1:9001", path: path,
                                      headers: [.init("Content-Type", "application/json"), .init("X-Amz-Invocation-Type", "RequestResponse")])
        let signer = SignatureV4Signer(credentials: AWSCredentials(accessKeyID: "AKIDTHAWEXAMPLE", secretAccessKey: secret),
                                       region: "us-east-1", service: "lambda")
        return signer.sign(request, payloadHash: .sha256(of: body), at: signedAt).applied(to: request.headers)
            + [.init("User-Agent", "test/1.0")]
    }

    static func verify(_ headers: [SignableRequest.Header], path: String = path, body: [UInt8] = body,
                       now: Date = signedAt) throws(SignatureV4Verifier.Failure) -> String {
        try verifier.verify(method: "POST", path: path, query: "", headers: headers, body: body, now: now)
    }

    @Test func aSignedRequestPassesAndNamesItsKey() throws {
        #expect(try Self.verify(Self.signed()) == "AKIDTHAWEXAMPLE")
        // Within five minutes either way of the service's clock.
        #expect(try Self.verify(Self.signed(), now: Self.signedAt.addingTimeInterval(299)) == "AKIDTHAWEXAMPLE")
        #expect(try Self.verify(Self.signed(), now: Self.signedAt.addingTimeInterval(-299)) == "AKIDTHAWEXAMPLE")
    }

    @Test func changesAndWrongKeysFailAsAWSSays() {
        func failure(_ body: () throws -> String) -> SignatureV4Verifier.Failure? {
            do { _ = try body(); return nil } catch { return error as? SignatureV4Verifier.Failure }
        }
        let mismatch = "The request signature we calculated does not match the signature you provided."
        // Another body, path or signed header value, or another secret.
        #expect(failure { try Self.verify(Self.signed(), body: Array(#"{"n": 8}"#.utf8)) }?.message.hasPrefix(mismatch) == true)
        #expect(failure { try Self.verify(Self.signed(), path: "/2015-03-31/functions/other/invocations") }?.code == .invalidSignature)
        let retyped = Self.signed().map { $0.name == "X-Amz-Invocation-Type" ? SignableRequest.Header($0.name, "Event") : $0 }
        #expect(failure { try Self.verify(retyped) }?.code == .invalidSignature)
        #expect(failure { try Self.verify(Self.signed(secret: "not-the-secret")) }?.code == .invalidSignature)
        // An unknown key, no signature, a stale or future date, a malformed header.
        let unknown = Self.signed().map { $0.name == "Authorization" ? SignableRequest.Header($0.name, $0.value.replacingOccurrences(of: "AKIDTHAWEXAMPLE", with: "AKIDOTHER")) : $0 }
        #expect(failure { try Self.verify(unknown) } == .init(code: .unrecognizedClient, message: "The security token included in the request is invalid."))
        let unsigned = Self.signed().filter { $0.name != "Authorization" }
        #expect(failure { try Self.verify(unsigned) } == .init(code: .missingAuthenticationToken, message: "Missing Authentication Token"))
        #expect(failure { try Self.verify(Self.signed(), now: Self.signedAt.addingTimeInterval(301)) }?.message.hasPrefix("Signature expired: ") == true)
        #expect(failure { try Self.verify(Self.signed(), now: Self.signedAt.addingTimeInterval(-301)) }?.message.hasPrefix("Signature not yet current: ") == true)
        let truncated = Self.signed().map { $0.name == "Authorization" ? SignableRequest.Header($0.name, String($0.value.prefix(60))) : $0 }
        #expect(failure { try Self.verify(truncated) }?.code == .incompleteSignature)
        #expect(failure { try Self.verify(unsigned) }?.status == 403)
    }

    /// botocore signs a Lambda Invoke as the AWS CLI and boto3 do; the verifier accepts it,
    /// and refuses it once one byte of the body changes.
    @Test func botocoreSignedRequestsPass() throws {
        let script = """
            import json, sys
            from botocore.auth import SigV4Auth
            from botocore.awsrequest import AWSRequest
            from botocore.credentials import Credentials
            request = AWSRequest(method="POST", url="http://127.0.0.1:9001/2015-03-31/functions/my-fn%3Alive/invocations?Qualifier=a%20b",
                                 data=b'{"n": 7}', headers={"Content-Type": "application/json", "X-Amz-Invocation-Type": "RequestResponse"})
            SigV4Auth(Credentials("AKIDTHAWEXAMPLE", sys.argv[1]), "lambda", "us-east-1").add_auth(request)
            print(json.dumps(dict(request.headers.items())))
            """
        let output = try TestSupport.run("python3", ["-c", script, Self.secret]).output
        let fields = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: String], "\(output)")
        var headers = fields.map { SignableRequest.Header($0.key, $0.value) }
        // botocore leaves Host to the HTTP layer, which sends it as the URL gives it.
        headers.append(.init("Host", "127.0.0.1:9001"))
        let date = try #require(fields["X-Amz-Date"])
        let now = try #require(ISO8601DateFormatter.basic.date(from: date))
        let verify = { (body: [UInt8]) throws -> String in
            try Self.verifier.verify(method: "POST", path: Self.path, query: "Qualifier=a%20b", headers: headers, body: body, now: now)
        }
        #expect(try verify(Self.body) == "AKIDTHAWEXAMPLE", "\(output)")
        #expect(throws: SignatureV4Verifier.Failure.self) { try verify(Array(#"{"n": 9}"#.utf8)) }
    }
}

extension ISO8601DateFormatter {
    /// `YYYYMMDDTHHMMSSZ`.
    static var basic: ISO8601DateFormatter {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withYear, .withMonth, .withDay, .withTime, .withTimeZone]
        return formatter
    }
}
