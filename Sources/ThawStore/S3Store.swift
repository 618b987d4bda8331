import AsyncHTTPClient
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
    /// Seconds a reply may pause mid-body before the attempt fails.
    public static let idleTimeout = 30

    static let sharedClient: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(Int64(idleTimeout)))
        configuration.connectionPool.retryConnectionEstablishment = false
        // A redirect would carry the session token to another host; S3 redirects only to say
        // the bucket is elsewhere, which is reported instead.
        configuration.redirectConfiguration = .disallow
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }()

    public func put(_ key: StoreKey, _ bytes: [UInt8]) async throws {
        _ = try await send(.PUT, key: key, body: bytes, payloadHash: .sha256(of: bytes), accept: [200])
    }

    public func putChunk(_ name: ChunkName, _ ciphertext: [UInt8], root: RootID) async throws {
        // The chunk's name is the SHA-256 of its ciphertext: the payload hash comes free.
        let hash = try PayloadHash(sha256Hex: name.hex)
        _ = try await send(.PUT, key: StoreLayout.chunk(name, root: root), body: ciphertext, payloadHash: hash, accept: [200])
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
        let reply = try await send(.DELETE, key: key, accept: [200, 204, 404])
        // Deleting a missing object is fine; deleting from a missing bucket is a mistake.
        if reply.status == 404, S3Request.errorDetail(reply.body).code == "NoSuchBucket" {
            throw StoreError(.rejected, "DELETE \(location)/\(key): the bucket \(bucket) does not exist")
        }
    }

    public func list(under prefix: String) -> AsyncThrowingStream<StoreKey, any Error> {
        // Both parts end in "/", so that prefix "thaw" never lists "thawed/…".
        let storeRoot = self.prefix.isEmpty ? "" : self.prefix + "/"
        let full = storeRoot + (prefix.isEmpty ? "" : prefix + "/")
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
                        for key in page.all("Key") where key.hasPrefix(full) {
                            let relative = String(key.dropFirst(storeRoot.count))
                            if let storeKey = try? StoreKey(relative) { continuation.yield(storeKey) }
                        }
                        guard page.first("IsTruncated") == "true" else { break }
                        guard let next = page.first("NextContinuationToken"), next != token else {
                            throw StoreError(.unavailable, "listing \(location)/\(prefix): the server said the listing "
                                             + "goes on but gave no new continuation token")
                        }
                        token = next
                    } while !Task.isCancelled
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    /// Creates the bucket (for first use against a fresh server); a bucket the caller already
    /// owns is fine, a name someone else holds is an error.
    public func createBucket() async throws {
        var body: [UInt8]?
        if settings.region != "us-east-1" {
            body = Array(("<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                + "<LocationConstraint>\(settings.region)</LocationConstraint></CreateBucketConfiguration>").utf8)
        }
        let reply = try await send(.PUT, key: nil, body: body, payloadHash: body.map { .sha256(of: $0) }, accept: [200, 409])
        if reply.status == 409, S3Request.errorDetail(reply.body).code != "BucketAlreadyOwnedByYou" {
            throw StoreError(.rejected, "creating bucket \(bucket): the server answered HTTP 409\(S3Request.errorDetail(reply.body).text)")
        }
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
              payloadHash: PayloadHash? = nil, accept: Set<UInt>) async throws -> Reply {
        let target = S3Request.Target(settings: settings, bucket: bucket, key: key.map { objectKey($0.path) }, query: query)
        let what = "\(method) \(key.map { "\(location)/\($0)" } ?? location)"
        var attempt = 0
        while true {
            attempt += 1
            let failure: String
            do {
                let request = S3Request.make(method, target: target, body: body, payloadHash: payloadHash ?? .emptyBody,
                                             settings: settings, date: Date())
                let response = try await client.execute(request, timeout: .milliseconds(Int64(settings.responseTimeout * 1000)))
                let status = response.status.code
                let bytes = method == .HEAD ? [] : Array(buffer: try await response.body.collect(upTo: Self.largestReply))
                if accept.contains(status) { return Reply(status: status, body: bytes) }
                let detail = S3Request.errorDetail(bytes)
                if Self.retryableStatuses.contains(status) || detail.code.map(Self.retryableCodes.contains) == true {
                    failure = "HTTP \(status)\(detail.text)"
                } else {
                    let kind: StoreError.Kind = status == 404 && detail.code != "NoSuchBucket" ? .notFound : .rejected
                    var message = "\(what): the server answered HTTP \(status)\(detail.text)"
                    if let region = response.headers.first(name: "x-amz-bucket-region"), region != settings.region {
                        message += "; the bucket is in \(region), pass --region \(region)"
                    }
                    throw StoreError(kind, message)
                }
            } catch let error as StoreError {
                throw error
            } catch {
                if Task.isCancelled || error is CancellationError { throw CancellationError() }
                guard Self.isTransient(error) else { throw StoreError(.unavailable, "\(what): \(error)") }
                failure = "\(error)"
            }
            guard attempt < settings.maxAttempts else {
                throw StoreError(.unavailable, "\(what) failed after \(attempt) attempts; last: \(failure)")
            }
            try await Task.sleep(for: Self.backoff(attempt: attempt, base: settings.retryBase))
        }
    }

    /// Replies that a later attempt may not get: server errors that are passing by nature, and
    /// throttling.
    static let retryableStatuses: Set<UInt> = [429, 500, 502, 503, 504]

    /// S3 error codes that ask for a retry whatever the status (S3 sends 400 RequestTimeout when
    /// an upload's body came too slowly).
    static let retryableCodes: Set<String> = [
        "SlowDown", "Throttling", "ThrottlingException", "RequestThrottled", "RequestLimitExceeded",
        "BandwidthLimitExceeded", "RequestTimeout", "RequestTimeoutException", "InternalError",
    ]

    /// Chunks are 512 KiB and manifests a few MiB; a longer reply is not one of Thaw's objects.
    static let largestReply = 64 << 20

    /// Whether a failure to get any reply may pass: network and timeout errors, yes; a reply
    /// too large, a malformed request or a cancelled one, no.
    static func isTransient(_ error: any Error) -> Bool {
        if error is NIOTooManyBytesError { return false }
        if let error = error as? HTTPClientError {
            return [HTTPClientError.connectTimeout, .readTimeout, .writeTimeout, .deadlineExceeded,
                    .remoteConnectionClosed, .getConnectionFromPoolTimeout].contains(error)
        }
        return true  // NIO's connection, I/O and channel errors
    }

    /// Exponential backoff with equal jitter: half the delay fixed, half random, capped at 5 s.
    static func backoff(attempt: Int, base: Double) -> Duration {
        let ceiling = min(5.0, base * Double(1 << min(attempt - 1, 16)))
        let seconds = ceiling / 2 + Double.random(in: 0...(ceiling / 2))
        return .milliseconds(Int64(seconds * 1000))
    }
}
