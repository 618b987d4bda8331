import Foundation
import Testing
import ThawAWS

/// Every case of AWS's published Signature Version 4 test suite, checked stage by stage: a
/// wrong canonical request explains a wrong signature, so each stage is asserted on its own.
@Suite struct SignatureV4SuiteTests {
    /// Guards the test data itself: each `.sts` file ends with the SHA-256 of its `.creq`, and
    /// each `.authz` carries the suite's scope.
    @Test(arguments: SuiteVector.all)
    func vectorDataIsConsistent(_ vector: SuiteVector) {
        let hashLine = vector.stringToSign.split(separator: "\n").last.map(String.init)
        #expect(hashLine == PayloadHash.sha256(of: Array(vector.canonicalRequest.utf8)).value)
        #expect(vector.authorization.hasPrefix(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders="))
    }

    @Test(arguments: SuiteVector.all)
    func canonicalRequestMatches(_ vector: SuiteVector) {
        #expect(vector.sign().canonicalRequest == vector.canonicalRequest)
    }

    @Test(arguments: SuiteVector.all)
    func stringToSignMatches(_ vector: SuiteVector) {
        #expect(vector.sign().stringToSign == vector.stringToSign)
    }

    @Test(arguments: SuiteVector.all)
    func authorizationMatches(_ vector: SuiteVector) {
        let signature = vector.sign()
        #expect(signature.authorization == vector.authorization)
        #expect(signature.headers.last == SignableRequest.Header("Authorization", vector.authorization))
        #expect(vector.authorization.hasSuffix("Signature=\(signature.signature)"))
    }

    /// The date header sent must be the one signed, and a generic service gets no content hash header.
    @Test(arguments: SuiteVector.all)
    func addedHeadersMatchTheSignedOnes(_ vector: SuiteVector) {
        let headers = vector.sign().headers
        #expect(headers.contains(SignableRequest.Header("X-Amz-Date", "20150830T123600Z")))
        #expect(!headers.contains { $0.name == "X-Amz-Content-Sha256" })
        #expect(!headers.contains { $0.name == "Host" }, "the suite's requests carry their own Host")
        let token = headers.first { $0.name == "X-Amz-Security-Token" }?.value
        #expect(token == vector.sessionToken)
    }

    /// Signing a URL gives the same result as signing its parts, for every case whose request
    /// line is already a valid URL (the raw UTF-8 and space cases are not).
    @Test(arguments: SuiteVector.all.filter { vector in
        (vector.path + vector.query).unicodeScalars.allSatisfy { $0.isASCII && $0 != " " }
    })
    func signingFromAURLMatches(_ vector: SuiteVector) throws {
        let text = "https://example.amazonaws.com" + vector.path + (vector.query.isEmpty ? "" : "?" + vector.query)
        let url = try #require(URL(string: text))
        let request = try SignableRequest(method: vector.method, url: url, headers: vector.headers)
        #expect(request.host == "example.amazonaws.com")
        #expect(vector.sign(request).authorization == vector.authorization)
    }

    /// Without a Host header in the request, the signer adds the one it signed.
    @Test func addsTheHostHeaderWhenTheRequestHasNone() throws {
        let vector = try #require(SuiteVector.all.first { $0.name == "get-vanilla" })
        var request = vector.request
        request.headers = []
        let signature = vector.sign(request)
        #expect(signature.authorization == vector.authorization)
        #expect(signature.headers.contains(SignableRequest.Header("Host", "example.amazonaws.com")))
    }

    @Test func coversTheRequiredCases() {
        let names = Set(SuiteVector.all.map(\.name))
        for required in [
            "get-vanilla", "get-vanilla-query-order-key-case", "get-vanilla-query-unreserved",
            "get-vanilla-utf8-query", "get-utf8", "get-space", "get-header-value-trim",
            "get-header-key-duplicate", "get-header-value-multiline", "post-vanilla",
            "post-x-www-form-urlencoded", "post-header-key-sort", "post-sts-header-before",
            "post-sts-header-after", "get-relative", "get-relative-relative", "get-slash", "get-slashes",
        ] {
            #expect(names.contains(required), "missing vector \(required)")
        }
    }
}
