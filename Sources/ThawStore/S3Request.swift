import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import ThawAWS

/// Builds signed S3 requests: addressing, URI encoding and Signature V4.
enum S3Request {
    /// Where a request goes: host, port and the path and query, already encoded.
    struct Target: Sendable {
        var host: String
        var port: Int?
        var scheme: String
        /// URI-encoded path (each key segment encoded, `/` kept).
        var path: String
        var query: [(String, String)]

        init(settings: S3Settings, bucket: String, key: String?, query: [(String, String)]) {
            scheme = settings.scheme
            port = settings.port
            let encodedKey = key.map { $0.split(separator: "/", omittingEmptySubsequences: false).map { URIEncoding.encode($0.utf8) }.joined(separator: "/") }
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
            query.map { "\(URIEncoding.encode($0.0.utf8))=\(URIEncoding.encode($0.1.utf8))" }.joined(separator: "&")
        }

        var url: String {
            "\(scheme)://\(hostHeader)\(path)" + (query.isEmpty ? "" : "?" + queryString)
        }
    }

    static func make(_ method: HTTPMethod, target: Target, body: [UInt8]?, payloadHash: PayloadHash,
                     settings: S3Settings, date: Date) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: target.url)
        request.method = method
        let signable = SignableRequest(method: method.rawValue, host: target.hostHeader, path: target.path,
                                       query: target.queryString, headers: [.init("Host", target.hostHeader)])
        let signer = SignatureV4Signer(
            credentials: AWSCredentials(accessKeyID: settings.accessKeyID, secretAccessKey: settings.secretAccessKey,
                                        sessionToken: settings.sessionToken),
            region: settings.region, service: "s3")
        let signature = signer.sign(signable, payloadHash: payloadHash, at: date)
        // The Host header is signed; send exactly the value that was signed.
        request.headers.replaceOrAdd(name: "Host", value: target.hostHeader)
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
