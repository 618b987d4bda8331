public import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import ThawAWS
public import ThawSeal

/// A store in an S3-compatible bucket, under an optional key prefix: each store key is an object.
///
/// Requests are signed with AWS Signature V4 (`ThawAWS`) and sent over async-http-client. Reads
/// use GET, existence checks HEAD, listings ListObjectsV2 page by page. Server errors (5xx),
/// throttling (429, 503 SlowDown) and network failures are retried with jittered exponential
/// backoff; other 4xx replies fail at once with S3's own error code and message.
public final class S3Store: ChunkStore {
    public let bucket: String
    public let prefix: String
    public let settings: S3Settings
    public var location: String { prefix.isEmpty ? "s3://\(bucket)" : "s3://\(bucket)/\(prefix)" }
    let client: HTTPClient

    public init(bucket: String, prefix: String, settings: S3Settings) throws {
        guard S3Bucket.isValid(bucket) else { throw StoreError(.invalidLocation, "'\(bucket)' is not a valid S3 bucket name") }
        self.bucket = bucket
        self.prefix = prefix
        self.settings = settings
        client = Self.sharedClient
    }

    /// One client for the process: it pools connections across stores and lives as long as
    /// the process, so it needs no shutdown. It does not retry failed connection attempts
    /// itself (it would keep trying until the request's deadline); `send` retries with backoff
    /// and counts those attempts, so an unreachable server is reported after `maxAttempts`.
    static let sharedClient: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: .seconds(10))
        configuration.connectionPool.retryConnectionEstablishment = false
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }()

    public func put(_ key: StoreKey, _ bytes: [UInt8]) async throws {
        _ = try await send(.PUT, key: key, body: bytes, payloadHash: Hex.encode(SHA256.hash(data: bytes)), accept: [200])
    }

    public func putChunk(_ name: ChunkName, _ ciphertext: [UInt8], root: RootID) async throws {
        // The chunk's name is the SHA-256 of its ciphertext: the payload hash comes free.
        _ = try await send(.PUT, key: StoreLayout.chunk(name, root: root), body: ciphertext, payloadHash: name.hex, accept: [200])
    }

    public func get(_ key: StoreKey) async throws -> [UInt8] {
        let reply = try await send(.GET, key: key, accept: [200, 404])
        guard reply.status == 200 else {
            let detail = S3Request.errorDetail(reply.body)
            if detail.code == "NoSuchBucket" {
                throw StoreError(.rejected, "GET \(location)/\(key): the server answered HTTP 404\(detail.text)")
            }
            throw StoreError(.notFound, "\(key) is not in \(location)")
        }
        return reply.body
    }

    public func exists(_ key: StoreKey) async throws -> Bool {
        try await send(.HEAD, key: key, accept: [200, 404]).status == 200
    }

    public func delete(_ key: StoreKey) async throws {
        _ = try await send(.DELETE, key: key, accept: [200, 204, 404])
    }

    public func list(under prefix: String) -> AsyncThrowingStream<StoreKey, any Error> {
        let full = objectKey(prefix) + (prefix.isEmpty ? "" : "/")
        let strip = self.prefix.isEmpty ? 0 : self.prefix.utf8.count + 1
        return AsyncThrowingStream { continuation in
            let task = Task {
                do {
                    var token: String?
                    repeat {
                        var query = [("list-type", "2"), ("prefix", full)]
                        if let size = settings.listPageSize { query.append(("max-keys", String(size))) }
                        if let token { query.append(("continuation-token", token)) }
                        let reply = try await send(.GET, key: nil, query: query, accept: [200])
                        let page = try S3XML(reply.body)
                        for key in page.all("Key") {
                            let relative = String(decoding: key.utf8.dropFirst(strip), as: UTF8.self)
                            if let storeKey = try? StoreKey(relative) { continuation.yield(storeKey) }
                        }
                        token = page.first("IsTruncated") == "true" ? page.first("NextContinuationToken") : nil
                    } while token != nil && !Task.isCancelled
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    /// Creates the bucket (for tests and first use against a fresh server); an existing bucket
    /// owned by the caller is fine.
    public func createBucket() async throws {
        _ = try await send(.PUT, key: nil, accept: [200, 409])
    }

    // MARK: Requests

    struct Reply {
        var status: UInt
        var body: [UInt8]
    }

    func objectKey(_ key: String) -> String {
        prefix.isEmpty ? key : (key.isEmpty ? prefix : prefix + "/" + key)
    }

    /// Sends one request, retrying what is worth retrying; `accept` lists the statuses that are answers.
    func send(_ method: HTTPMethod, key: StoreKey?, query: [(String, String)] = [], body: [UInt8]? = nil,
              payloadHash: String? = nil, accept: Set<UInt>) async throws -> Reply {
        let target = S3Request.Target(settings: settings, bucket: bucket, key: key.map { objectKey($0.path) }, query: query)
        let what = "\(method) \(key.map { "\(location)/\($0)" } ?? location)"
        var attempt = 0
        while true {
            attempt += 1
            let failure: String
            do {
                let request = try S3Request.make(method, target: target, body: body,
                                                 payloadHash: payloadHash ?? S3Request.emptyHash, settings: settings, date: Date())
                let response = try await client.execute(request, timeout: .milliseconds(Int64(settings.readTimeout * 1000)))
                let status = response.status.code
                let bytes = method == .HEAD ? [] : Array(buffer: try await response.body.collect(upTo: 256 << 20))
                if accept.contains(status) { return Reply(status: status, body: bytes) }
                let detail = S3Request.errorDetail(bytes)
                if status >= 500 || status == 429 || detail.code == "SlowDown" || detail.code == "Throttling" {
                    failure = "HTTP \(status)\(detail.text)"
                } else {
                    let kind: StoreError.Kind = status == 404 && detail.code != "NoSuchBucket" ? .notFound : .rejected
                    throw StoreError(kind, "\(what): the server answered HTTP \(status)\(detail.text)")
                }
            } catch let error as StoreError {
                throw error
            } catch {
                failure = "\(error)"
            }
            guard attempt < settings.maxAttempts else {
                throw StoreError(.unavailable, "\(what) failed after \(attempt) attempts; last: \(failure)")
            }
            try await Task.sleep(for: Self.backoff(attempt: attempt, base: settings.retryBase))
        }
    }

    /// Exponential backoff with equal jitter: half the delay fixed, half random, capped at 5 s.
    static func backoff(attempt: Int, base: Double) -> Duration {
        let ceiling = min(5.0, base * Double(1 << min(attempt - 1, 16)))
        let seconds = ceiling / 2 + Double.random(in: 0...(ceiling / 2))
        return .milliseconds(Int64(seconds * 1000))
    }
}
