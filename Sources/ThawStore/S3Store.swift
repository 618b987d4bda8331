import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import ThawAWS
public import ThawSeal

/// A store in an S3-compatible bucket, under an optional key prefix: each store key is an object.
///
/// Requests are signed with AWS Signature V4 (`ThawAWS`) and sent over async-http-client. Reads
/// use GET, existence checks HEAD, listings ListObjectsV2 page by page, prefix deletion
/// DeleteObjects 1,000 keys at a time. Server errors (5xx),
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

    /// Removes every object under `prefix` with S3's DeleteObjects (`POST /?delete`): one request
    /// per 1,000 keys, where the protocol's default sends one DELETE per key, and a root holds
    /// a few hundred thousand chunks. Thaw speaks this part of the S3 API itself, like the rest,
    /// because there is no S3 package for Swift here.
    ///
    /// The keys come from `list(under:)`, which asks for `prefix/` and checks every key the server
    /// returns, so `roots/r0001` never reaches `roots/r00011/…` (nor an object named exactly
    /// `roots/r0001`). The listing goes on while a batch is deleted: a continuation token points
    /// past the last key listed, so deleting listed keys does not move later pages. Batches go
    /// one at a time; each is retried by `send` like any request. S3 answers 200 even when it
    /// could not delete some keys, and names them in the reply: they fail the call, naming each
    /// key, S3's code and the store, once the batch's other keys are gone.
    ///
    /// - Throws: `StoreError.invalidLocation` for a prefix that is not a store key (`""` would be
    ///   the whole store); `.rejected` for keys S3 refused to delete (`.unavailable` when each
    ///   refusal was a passing one, such as SlowDown); the errors of `list` and `send`.
    @discardableResult
    public func deleteAll(under prefix: String) async throws -> Int {
        let root = try StoreKey(prefix)
        var batch: [String] = []
        var count = 0
        for try await key in list(under: root.path) {
            batch.append(objectKey(key.path))
            if batch.count == Self.deleteBatchSize {
                try await deleteObjects(batch)
                count += batch.count
                batch.removeAll(keepingCapacity: true)
            }
        }
        if !batch.isEmpty {
            try await deleteObjects(batch)
            count += batch.count
        }
        return count
    }

    /// The most keys one DeleteObjects request may name.
    static let deleteBatchSize = 1000

    /// Deletes up to `deleteBatchSize` objects, by full object key, in one DeleteObjects request.
    func deleteObjects(_ objectKeys: [String]) async throws {
        let body = Self.deleteRequestBody(objectKeys: objectKeys)
        // S3 requires a body checksum on DeleteObjects; the SHA-256 in the signature is not one.
        let reply = try await send(.POST, key: nil, query: [("delete", "")], body: body, payloadHash: .sha256(of: body),
                                   headers: [("Content-MD5", Self.contentMD5(body)), ("Content-Type", "application/xml")],
                                   accept: [200])
        try checkDeleteReply(reply.body, requested: objectKeys.count)
    }

    /// The DeleteObjects body: quiet, so that the reply lists only the keys that failed.
    static func deleteRequestBody(objectKeys: [String]) -> [UInt8] {
        var xml = "<Delete><Quiet>true</Quiet>"
        for key in objectKeys { xml += "<Object><Key>\(xmlEscaped(key))</Key></Object>" }
        xml += "</Delete>"
        return Array(xml.utf8)
    }

    /// The `Content-MD5` header's value: the base64 of the body's MD5 digest.
    static func contentMD5(_ body: [UInt8]) -> String {
        Data(Insecure.MD5.hash(data: body)).base64EncodedString()
    }

    static func xmlEscaped(_ text: String) -> String {
        var escaped = ""
        escaped.reserveCapacity(text.utf8.count)
        for character in text {
            switch character {
            case "&": escaped += "&amp;"
            case "<": escaped += "&lt;"
            case ">": escaped += "&gt;"
            case "\"": escaped += "&quot;"
            case "'": escaped += "&apos;"
            default: escaped.append(character)
            }
        }
        return escaped
    }

    /// Reads a DeleteObjects reply: a `DeleteResult` whose `<Error>` entries, if any, are keys
    /// that stayed.
    func checkDeleteReply(_ body: [UInt8], requested: Int) throws {
        let what = "POST \(location)/?delete"
        let document = try S3XML(body)
        guard document.first("DeleteResult") != nil else {
            throw StoreError(.unavailable, "\(what): the server answered 200 without a DeleteResult\(S3Request.errorDetail(body).text)")
        }
        let failures = document.elements("Error")
        guard !failures.isEmpty else { return }
        let named = failures.prefix(5).map { failure in
            let code = failure["Code"] ?? "no code"
            let message = failure["Message"].map { ": \($0)" } ?? ""
            return "s3://\(bucket)/\(failure["Key"] ?? "?") (\(code)\(message))"
        }
        let more = failures.count > named.count ? ", and \(failures.count - named.count) more" : ""
        let passing = failures.allSatisfy { $0["Code"].map(Self.retryableCodes.contains) == true }
        throw StoreError(passing ? .unavailable : .rejected,
                         "\(what): the server did not delete \(failures.count) of \(requested) objects: "
                             + named.joined(separator: ", ") + more)
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

    /// Sends one request, retrying what is worth retrying; `accept` lists the statuses that are
    /// answers. `headers` go out unsigned (the signature covers the body through its hash).
    func send(_ method: HTTPMethod, key: StoreKey?, query: [(String, String)] = [], body: [UInt8]? = nil,
              payloadHash: PayloadHash? = nil, headers: [(String, String)] = [], accept: Set<UInt>) async throws -> Reply {
        let target = S3Request.Target(settings: settings, bucket: bucket, key: key.map { objectKey($0.path) }, query: query)
        let what = "\(method) \(key.map { "\(location)/\($0)" } ?? location)"
        var attempt = 0
        while true {
            attempt += 1
            let failure: String
            do {
                var request = S3Request.make(method, target: target, body: body, payloadHash: payloadHash ?? .emptyBody,
                                             settings: settings, date: Date())
                for (name, value) in headers { request.headers.add(name: name, value: value) }
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
