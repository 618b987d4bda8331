import Foundation
import Testing
import ThawAWS

/// One case of AWS's Signature Version 4 test suite (`aws-sig-v4-test-suite`): the request
/// from its `.req` file and the expected `.creq`, `.sts` and `.authz` texts.
///
/// Every case signs for region `us-east-1`, service `service`, at 2015-08-30T12:36:00Z, with
/// the suite's example key pair.
struct SuiteVector: Sendable, CustomTestStringConvertible {
    static let credentials = AWSCredentials(
        accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    /// 2015-08-30T12:36:00Z.
    static let signingTime = Date(timeIntervalSince1970: 1_440_938_160)
    /// The suite's example STS session token (`post-sts-token/readme.txt`).
    static let exampleSessionToken =
        "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA=="

    let name: String
    let method: String
    /// The request-line path exactly as the `.req` file has it (raw, not escaped).
    let path: String
    let query: String
    let headers: [SignableRequest.Header]
    var body: String = ""
    var sessionToken: String?
    /// `post-sts-header-after` adds the token after signing; every other case signs it.
    var signsSecurityToken = true
    let canonicalRequest: String
    let stringToSign: String
    let authorization: String

    var testDescription: String { name }

    var request: SignableRequest {
        SignableRequest(method: method, host: "example.amazonaws.com", path: path, query: query, headers: headers)
    }

    var signer: SignatureV4Signer {
        var credentials = Self.credentials
        credentials.sessionToken = sessionToken
        var options = SigningOptions(service: "service")
        options.signsSecurityToken = signsSecurityToken
        return SignatureV4Signer(credentials: credentials, region: "us-east-1", service: "service", options: options)
    }

    var payloadHash: PayloadHash { .sha256(of: Array(body.utf8)) }

    func sign(_ request: SignableRequest? = nil) -> RequestSignature {
        signer.sign(request ?? self.request, payloadHash: payloadHash, at: Self.signingTime)
    }
}
