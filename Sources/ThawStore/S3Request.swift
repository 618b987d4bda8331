import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import ThawAWS

/// Builds signed S3 requests: addressing, URI encoding and Signature V4.
enum S3Request {
    /// SHA-256 of an empty payload.
    static let emptyHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    /// Where a request goes: host, port and the path and query, already encoded.
    struct Target: Sendable, Equatable {
        var host: String
        var port: Int?
        var scheme: String
        /// URI-encoded path (each key segment encoded, `/` kept).
        var path: String
        var query: [(String, String)]

        static func == (a: Target, b: Target) -> Bool {
            a.host == b.host && a.port == b.port && a.scheme == b.scheme && a.path == b.path
                && a.query.elementsEqual(b.query, by: { $0 == $1 })
        }

        init(settings: S3Settings, bucket: String, key: String?, query: [(String, String)]) {
            scheme = settings.scheme
            port = settings.port
            let encodedKey = key.map { $0.split(separator: "/", omittingEmptySubsequences: false).map { S3Request.encode(String($0)) }.joined(separator: "/") }
            switch settings.addressing {
            case .path:
                host = settings.host
                path = "/" + bucket + (encodedKey.map { "/" + $0 } ?? "")
            case .virtual:
                host = bucket + "." + settings.host
                path = "/" + (encodedKey ?? "")
            }
            self.query = query
        }

        var hostHeader: String {
            let defaultPort = scheme == "https" ? 443 : 80
            return port.map { $0 == defaultPort ? host : "\(host):\($0)" } ?? host
        }

        var queryString: String {
            query.map { "\(S3Request.encode($0.0))=\(S3Request.encode($0.1))" }.joined(separator: "&")
        }

        var url: String {
            "\(scheme)://\(hostHeader)\(path)" + (query.isEmpty ? "" : "?" + queryString)
        }
    }

    /// RFC 3986 percent-encoding of everything but the unreserved characters, as S3 signs it.
    static func encode(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                out += String(format: "%%%02X", byte)
            }
        }
        return out
    }

    static func make(_ method: HTTPMethod, target: Target, body: [UInt8]?, payloadHash: String,
                     settings: S3Settings, date: Date) throws -> HTTPClientRequest {
        var request = HTTPClientRequest(url: target.url)
        request.method = method
        let signable = SignableRequest(method: method.rawValue, host: target.hostHeader, path: target.path,
                                       query: target.queryString, headers: [.init("Host", target.hostHeader)])
        let signer = SignatureV4Signer(
            credentials: AWSCredentials(accessKeyID: settings.accessKeyID, secretAccessKey: settings.secretAccessKey,
                                        sessionToken: settings.sessionToken),
            region: settings.region, service: "s3")
        let signature = signer.sign(signable, payloadHash: try PayloadHash(sha256Hex: payloadHash), at: date)
        for header in signature.headers where header.name.lowercased() != "host" {
            request.headers.add(name: header.name, value: header.value)
        }
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
        return request
    }

    /// S3's error code and message from an error document, for messages.
    static func errorDetail(_ body: [UInt8]) -> (code: String?, text: String) {
        guard !body.isEmpty, let document = try? S3XML(body) else { return (nil, "") }
        let code = document.first("Code")
        let message = document.first("Message")
        let text = [code, message].compactMap { $0 }.joined(separator: ": ")
        return (code, text.isEmpty ? "" : " (\(text))")
    }
}
