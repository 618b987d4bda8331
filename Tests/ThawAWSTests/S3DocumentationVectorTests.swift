import Foundation
import Testing
import ThawAWS

/// The worked examples in the Amazon S3 API reference, "Signature Calculations for the
/// Authorization Header: Transferring Payload in a Single Chunk": bucket `examplebucket` in
/// us-east-1, signed at 2013-05-24T00:00:00Z. The expected canonical requests, string-to-sign
/// hashes and signatures are the ones published on that page.
@Suite struct S3DocumentationVectorTests {
    static let credentials = AWSCredentials(
        accessKeyID: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    static let signingTime = Date(timeIntervalSince1970: 1_369_353_600)
    static let signer = SignatureV4Signer(credentials: credentials, region: "us-east-1", service: "s3")
    static let emptyHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    static func sign(_ method: String, _ url: String, headers: [SignableRequest.Header] = [],
                     payloadHash: PayloadHash = .emptyBody) throws -> RequestSignature {
        let request = try SignableRequest(method: method, url: try #require(URL(string: url)), headers: headers)
        return signer.sign(request, payloadHash: payloadHash, at: signingTime)
    }

    static func expectStringToSign(_ signature: RequestSignature, canonicalHash: String) {
        #expect(signature.stringToSign == """
            AWS4-HMAC-SHA256
            20130524T000000Z
            20130524/us-east-1/s3/aws4_request
            \(canonicalHash)
            """)
    }

    static func expectAuthorization(_ signature: RequestSignature, signedHeaders: String, signature expected: String) {
        #expect(signature.signature == expected)
        #expect(signature.authorization == "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/"
            + "aws4_request, SignedHeaders=\(signedHeaders), Signature=\(expected)")
    }

    @Test func getObjectWithRange() throws {
        let signature = try Self.sign(
            "GET", "https://examplebucket.s3.amazonaws.com/test.txt", headers: [.init("Range", "bytes=0-9")])
        #expect(signature.canonicalRequest == """
            GET
            /test.txt

            host:examplebucket.s3.amazonaws.com
            range:bytes=0-9
            x-amz-content-sha256:\(Self.emptyHash)
            x-amz-date:20130524T000000Z

            host;range;x-amz-content-sha256;x-amz-date
            \(Self.emptyHash)
            """)
        Self.expectStringToSign(signature, canonicalHash: "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972")
        Self.expectAuthorization(
            signature, signedHeaders: "host;range;x-amz-content-sha256;x-amz-date",
            signature: "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
        #expect(signature.headers.contains(SignableRequest.Header("X-Amz-Content-Sha256", Self.emptyHash)))
        #expect(signature.headers.contains(SignableRequest.Header("Host", "examplebucket.s3.amazonaws.com")))
    }

    /// The key `test$file.text` must be signed as `test%24file.text`, whichever way the URL spells it.
    @Test(arguments: ["/test$file.text", "/test%24file.text"])
    func putObject(path: String) throws {
        let payloadHash = PayloadHash.sha256(of: Array("Welcome to Amazon S3.".utf8))
        #expect(payloadHash.value == "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072")
        let signature = try Self.sign(
            "PUT", "https://examplebucket.s3.amazonaws.com" + path,
            headers: [.init("Date", "Fri, 24 May 2013 00:00:00 GMT"), .init("x-amz-storage-class", "REDUCED_REDUNDANCY")],
            payloadHash: payloadHash)
        #expect(signature.canonicalRequest == """
            PUT
            /test%24file.text

            date:Fri, 24 May 2013 00:00:00 GMT
            host:examplebucket.s3.amazonaws.com
            x-amz-content-sha256:\(payloadHash.value)
            x-amz-date:20130524T000000Z
            x-amz-storage-class:REDUCED_REDUNDANCY

            date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class
            \(payloadHash.value)
            """)
        Self.expectStringToSign(signature, canonicalHash: "9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b4158342019d")
        Self.expectAuthorization(
            signature, signedHeaders: "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
            signature: "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd")
    }

    /// A sub-resource without a value (`?lifecycle`) signs as `lifecycle=`.
    @Test func getBucketLifecycle() throws {
        let signature = try Self.sign("GET", "https://examplebucket.s3.amazonaws.com/?lifecycle")
        #expect(signature.canonicalRequest == """
            GET
            /
            lifecycle=
            host:examplebucket.s3.amazonaws.com
            x-amz-content-sha256:\(Self.emptyHash)
            x-amz-date:20130524T000000Z

            host;x-amz-content-sha256;x-amz-date
            \(Self.emptyHash)
            """)
        Self.expectStringToSign(signature, canonicalHash: "9766c798316ff2757b517bc739a67f6213b4ab36dd5da2f94eaebf79c77395ca")
        Self.expectAuthorization(
            signature, signedHeaders: "host;x-amz-content-sha256;x-amz-date",
            signature: "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543")
    }

    /// The parameters arrive in a different order than they are signed.
    @Test func listObjects() throws {
        let signature = try Self.sign("GET", "https://examplebucket.s3.amazonaws.com/?prefix=J&max-keys=2")
        #expect(signature.canonicalRequest == """
            GET
            /
            max-keys=2&prefix=J
            host:examplebucket.s3.amazonaws.com
            x-amz-content-sha256:\(Self.emptyHash)
            x-amz-date:20130524T000000Z

            host;x-amz-content-sha256;x-amz-date
            \(Self.emptyHash)
            """)
        Self.expectStringToSign(signature, canonicalHash: "df57d21db20da04d7fa30298dd4488ba3a2b47ca3a489c74750e0f1e7df1b9b7")
        Self.expectAuthorization(
            signature, signedHeaders: "host;x-amz-content-sha256;x-amz-date",
            signature: "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7")
    }

    /// AWS's published key-derivation example (secret `wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY`,
    /// 20150830, us-east-1, iam).
    @Test func signingKeyDerivationMatchesTheDocumentedExample() {
        let key = SignatureV4Signer.signingKey(
            secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", dateStamp: "20150830",
            region: "us-east-1", service: "iam")
        let hex = key.map { byte in
            let digits = String(byte, radix: 16)
            return byte < 16 ? "0" + digits : digits
        }.joined()
        #expect(hex == "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9")
    }
}
