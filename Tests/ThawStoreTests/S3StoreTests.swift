import Foundation
import Testing
import ThawSeal
@testable import ThawStore
import ThawTestSupport

/// The S3 store against a real S3-compatible server (moto_server), cross-checked with the AWS CLI.
@Suite(.serialized) struct S3StoreTests {
    static func store(_ server: S3TestServer, bucket: String, prefix: String = "thaw", endpoint: String? = nil,
                      addressing: S3Settings.Addressing = .path, pageSize: Int? = nil) async throws -> S3Store {
        var settings = try S3Settings(endpoint: endpoint ?? server.endpoint, region: "us-east-1",
                                      accessKeyID: S3TestServer.accessKey, secretAccessKey: S3TestServer.secretKey,
                                      addressing: addressing)
        settings.listPageSize = pageSize
        settings.retryBase = 0.05
        let store = try S3Store(bucket: bucket, prefix: prefix, settings: settings)
        try await store.createBucket()
        return store
    }

    @Test func putGetExistsDeleteAndPagedListing() async throws {
        let server = try S3TestServer()
        let store = try await Self.store(server, bucket: "thaw-basic", pageSize: 7)
        let key = try StoreKey("roots/r0001/manifests/default/m1")
        #expect(try await store.exists(key) == false)
        let missing = await #expect(throws: StoreError.self) { try await store.get(key) }
        #expect(missing?.kind == .notFound)
        try await store.put(key, Array("hello".utf8))
        #expect(try await store.get(key) == Array("hello".utf8))
        #expect(try await store.exists(key))
        var names: Set<String> = [key.path]
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<30 {
                let sealed = ChunkSealer.seal(Array("chunk \(i)".utf8), salt: Salt(root: .initial, replica: 0))
                names.insert(StoreLayout.chunk(sealed.name, root: .initial).path)
                group.addTask { try await store.putChunk(sealed.name, sealed.ciphertext, root: .initial) }
            }
            try await group.waitForAll()
        }
        // 31 keys over pages of 7: five continuation tokens.
        #expect(Set(try await store.listAll(under: "roots/r0001").map(\.path)) == names)
        #expect(try await store.listAll(under: "roots/r0002").isEmpty)
        try await store.delete(key)
        try await store.delete(key)
        #expect(try await store.exists(key) == false)
    }

    /// What Thaw writes, the AWS CLI reads byte-identical, and the reverse.
    @Test func agreesWithTheAWSCLI() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let server = try S3TestServer()
            let store = try await Self.store(server, bucket: "thaw-cli", prefix: "p/q")
            var generator = SystemRandomNumberGenerator()
            let bytes = (0..<300_000).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let sealed = ChunkSealer.seal(bytes, salt: Salt(root: .initial, replica: 0))
            try await store.putChunk(sealed.name, sealed.ciphertext, root: .initial)
            let key = StoreLayout.chunk(sealed.name, root: .initial)
            try server.aws(["s3api", "get-object", "--bucket", "thaw-cli", "--key", "p/q/" + key.path, dir + "/got"])
            #expect([UInt8](try Data(contentsOf: URL(fileURLWithPath: dir + "/got"))) == sealed.ciphertext)

            try Data(bytes).write(to: URL(fileURLWithPath: dir + "/put"))
            try server.aws(["s3api", "put-object", "--bucket", "thaw-cli", "--key", "p/q/roots/r0001/manifests/default/from-cli",
                            "--body", dir + "/put"])
            #expect(try await store.get(try StoreKey("roots/r0001/manifests/default/from-cli")) == bytes)
            let listed = try server.aws(["s3api", "list-objects-v2", "--bucket", "thaw-cli", "--prefix", "p/q/roots/"]).output
            #expect(listed.contains(sealed.name.hex))

            // Objects of a neighbouring prefix ("p/qq", "p/q-old") are not this store's.
            try server.aws(["s3api", "put-object", "--bucket", "thaw-cli", "--key", "p/qq/roots/r0001/manifests/default/other",
                            "--body", dir + "/put"])
            try server.aws(["s3api", "put-object", "--bucket", "thaw-cli", "--key", "p/q-old", "--body", dir + "/put"])
            let all = Set(try await store.listAll(under: "").map(\.path))
            #expect(all == [key.path, "roots/r0001/manifests/default/from-cli"])
        }
    }

    @Test func virtualHostedAddressingReachesTheSameObjects() async throws {
        let server = try S3TestServer()
        let pathStore = try await Self.store(server, bucket: "thaw-vhost")
        let virtualStore = try await Self.store(server, bucket: "thaw-vhost", endpoint: "http://localhost:\(server.port)",
                                                addressing: .virtual)
        let key = try StoreKey("roots/r0001/layers/default/x")
        try await virtualStore.put(key, [1, 2, 3])
        #expect(try await pathStore.get(key) == [1, 2, 3])
        #expect(try await virtualStore.listAll(under: "roots").map(\.path) == [key.path])
    }

    /// Server errors for a while, then recovery: the retries absorb them.
    @Test func retriesServerErrorsAndThrottling() async throws {
        let server = try S3TestServer()
        let proxy = try S3FaultProxy(upstream: server.endpoint)
        let store = try await Self.store(server, bucket: "thaw-faults", endpoint: proxy.endpoint)
        let key = try StoreKey("roots/r0001/manifests/default/m")
        try proxy.fail(status: 500, count: 4)
        try await store.put(key, [7])
        #expect(try proxy.faultsServed() == 4)
        try proxy.fail(status: 503, seconds: 1.0)
        #expect(try await store.get(key) == [7])
        #expect(try proxy.faultsServed() > 4)
    }

    @Test func aDownServerOrAMissingBucketIsAClearError() async throws {
        let server = try S3TestServer()
        let store = try await Self.store(server, bucket: "thaw-errors")
        let key = try StoreKey("roots/r0001/manifests/default/m")
        var settings = store.settings
        settings.port = try TestSupport.freePort()
        settings.maxAttempts = 3
        let down = try S3Store(bucket: "thaw-errors", prefix: "", settings: settings)
        let unreachable = await #expect(throws: StoreError.self) { try await down.put(key, [1]) }
        #expect(unreachable?.kind == .unavailable)
        #expect(unreachable?.message.contains("after 3 attempts") == true)
        let noBucket = try S3Store(bucket: "thaw-no-such-bucket", prefix: "", settings: store.settings)
        let rejected = await #expect(throws: StoreError.self) { try await noBucket.put(key, [1]) }
        #expect(rejected?.kind == .rejected)
        #expect(rejected?.message.contains("NoSuchBucket") == true)
    }

    // MARK: Deleting a prefix (DeleteObjects)

    /// Writes `objects` into `store` a hundred at a time, each hundred concurrently.
    static func putAll(_ store: S3Store, _ objects: [(StoreKey, [UInt8])]) async throws {
        for start in stride(from: 0, to: objects.count, by: 100) {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (key, bytes) in objects[start..<min(start + 100, objects.count)] {
                    group.addTask { try await store.put(key, bytes) }
                }
                try await group.waitForAll()
            }
        }
    }

    /// Bytes that differ per key, so that a swapped or rewritten object shows.
    static func contents(_ key: String) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return Array(key.utf8) + (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }

    /// Requests the fault proxy forwarded, by method.
    static func forwarded(_ proxy: S3FaultProxy) throws -> [String: Int] {
        let output = try TestSupport.run("curl", ["-sf", proxy.endpoint + "/__stats"]).output
        let object = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any]
        return object?["forwarded"] as? [String: Int] ?? [:]
    }

    /// Every object key in the bucket under `prefix`, as the AWS CLI lists it (it follows the
    /// continuation tokens itself).
    static func cliKeys(_ server: S3TestServer, bucket: String, prefix: String? = nil) throws -> Set<String> {
        let output = try server.aws(["s3api", "list-objects-v2", "--bucket", bucket, "--output", "json"]
                                    + (prefix.map { ["--prefix", $0] } ?? [])).output
        // An empty listing prints nothing at all.
        guard !output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else { return [] }
        let object = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any]
        let contents = object?["Contents"] as? [[String: Any]] ?? []
        return Set(contents.compactMap { $0["Key"] as? String })
    }

    /// 1,205 objects under a root go in two DeleteObjects requests (1,000 and 205), while the
    /// listing pages through them; neighbours whose keys merely start with the root's name
    /// stay, byte-identical, and the AWS CLI sees the same bucket.
    @Test func deleteAllRemovesARootInBatchesAndNothingElse() async throws {
        let server = try S3TestServer()
        let bucket = "thaw-delete-all"
        let store = try await Self.store(server, bucket: bucket, prefix: "")
        let doomed = try (0..<1205).map { i in
            let path = i % 10 == 0 ? "roots/r0001/manifests/default/m\(i)"
                : "roots/r0001/chunks/\(String(i % 256, radix: 16))/c\(i)"
            return (try StoreKey(path), Self.contents(path))
        }
        let kept = try ["roots/r00011/chunks/aa/c1", "roots/r00011/manifests/default/m", "roots/r0001-old/manifests/default/m",
                        "roots/r0001", "roots/r0002/chunks/ab/c2", "roots/r0002/manifests/default/m", "top", "roots-index"]
            .map { (try StoreKey($0), Self.contents($0)) }
        try await Self.putAll(store, doomed + kept)
        #expect(try await store.listAll(under: "roots/r0001").count == 1205)
        #expect(try Self.cliKeys(server, bucket: bucket).count == 1205 + kept.count)

        // Through the proxy, which counts requests by method; pages of 400 keys, so the
        // deletion of the first batch overlaps the listing's later pages.
        let proxy = try S3FaultProxy(upstream: server.endpoint)
        let proxied = try await Self.store(server, bucket: bucket, prefix: "", endpoint: proxy.endpoint, pageSize: 400)
        #expect(try await proxied.deleteAll(under: "roots/r0001") == 1205)
        let requests = try Self.forwarded(proxy)
        #expect(requests["POST"] == 2)
        #expect(requests["DELETE"] == nil)

        #expect(try await store.listAll(under: "roots/r0001").isEmpty)
        for (key, bytes) in kept {
            #expect(try await store.get(key) == bytes, "\(key)")
        }
        let keptPaths = Set(kept.map(\.0.path))
        #expect(try Self.cliKeys(server, bucket: bucket, prefix: "roots/") == keptPaths.filter { $0.hasPrefix("roots/") })
        #expect(try Self.cliKeys(server, bucket: bucket) == keptPaths)
    }

    /// A prefix with nothing under it: nothing to send, 0 deleted. An empty prefix would be the
    /// whole store, and is refused.
    @Test func deleteAllOfAnEmptyPrefixDeletesNothing() async throws {
        let server = try S3TestServer()
        let bucket = "thaw-delete-empty"
        let proxy = try S3FaultProxy(upstream: server.endpoint)
        let store = try await Self.store(server, bucket: bucket, endpoint: proxy.endpoint)
        let key = try StoreKey("roots/r0002/manifests/default/m")
        try await store.put(key, [4, 2])
        #expect(try await store.deleteAll(under: "roots/r0001") == 0)
        #expect(try Self.forwarded(proxy)["POST"] == nil)
        let whole = await #expect(throws: StoreError.self) { try await store.deleteAll(under: "") }
        #expect(whole?.kind == .invalidLocation)
        #expect(try await store.get(key) == [4, 2])
        #expect(try Self.cliKeys(server, bucket: bucket) == ["thaw/" + key.path])
    }

    /// A store under `some/prefix` deletes its own root only: not the same root at the bucket
    /// top, nor under `some/prefixx`, `some/prefix-old` or `some`. Virtual-hosted, so that the
    /// POST goes to the bucket's host name.
    @Test func deleteAllStaysInsideTheStoresPrefix() async throws {
        let server = try S3TestServer()
        let bucket = "thaw-delete-prefixed"
        let top = try await Self.store(server, bucket: bucket, prefix: "")
        let store = try await Self.store(server, bucket: bucket, prefix: "some/prefix", endpoint: "http://localhost:\(server.port)",
                                         addressing: .virtual)
        let mine = try (0..<30).map { i in try StoreKey("roots/r0001/chunks/0\(i % 4)/c\(i)") }
        try await Self.putAll(store, mine.map { ($0, Self.contents($0.path)) })
        let others = try ["roots/r0001/chunks/00/c0", "some/prefixx/roots/r0001/chunks/00/c0", "some/prefix-old/roots/r0001/chunks/00/c0",
                          "some/roots/r0001/chunks/00/c0", "some/prefix/roots/r00011/chunks/00/c0", "some/prefix/roots/r0002/chunks/00/c0"]
            .map { (try StoreKey($0), Self.contents($0)) }
        try await Self.putAll(top, others)
        #expect(try Self.cliKeys(server, bucket: bucket).count == 30 + others.count)

        #expect(try await store.deleteAll(under: "roots/r0001") == 30)
        #expect(try await store.listAll(under: "roots").map(\.path).sorted() == ["roots/r00011/chunks/00/c0", "roots/r0002/chunks/00/c0"])
        #expect(try Self.cliKeys(server, bucket: bucket) == Set(others.map(\.0.path)))
        for (key, bytes) in others {
            #expect(try await top.get(key) == bytes, "\(key)")
        }
    }

    /// S3 answers 200 and lists the keys it would not delete (here a bucket policy denies one):
    /// the call fails naming the key, S3's code and the store; the batch's other keys are gone.
    @Test func deleteAllReportsKeysTheServerKept() async throws {
        let server = try S3TestServer()
        let bucket = "thaw-delete-denied"
        let store = try await Self.store(server, bucket: bucket)
        let locked = try StoreKey("roots/r0003/chunks/aa/locked")
        let free = try (0..<3).map { try StoreKey("roots/r0003/chunks/aa/free\($0)") }
        try await Self.putAll(store, ([locked] + free).map { ($0, [1]) })
        let policy = """
            {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:DeleteObject",
             "Resource": "arn:aws:s3:::\(bucket)/thaw/\(locked.path)"}]}
            """
        try server.aws(["s3api", "put-bucket-policy", "--bucket", bucket, "--policy", policy])

        let error = await #expect(throws: StoreError.self) { try await store.deleteAll(under: "roots/r0003") }
        #expect(error?.kind == .rejected)
        #expect(error?.message.contains("s3://\(bucket)/thaw/\(locked.path) (AccessDenied: Access Denied)") == true)
        #expect(error?.message.contains("POST s3://\(bucket)/thaw/?delete") == true)
        #expect(error?.message.contains("1 of 4 objects") == true)
        #expect(try await store.listAll(under: "roots/r0003") == [locked])
    }

    /// The request body, XML-escaped, and its Content-MD5 as openssl computes it; a verbose reply
    /// (moto ignores Quiet) whose `<Deleted>` keys do not pass for failures.
    @Test func deleteObjectsBodyAndReply() throws {
        let body = S3Store.deleteRequestBody(objectKeys: ["a/b", "x&y<z>\"'"])
        #expect(String(decoding: body, as: UTF8.self) == "<Delete><Quiet>true</Quiet><Object><Key>a/b</Key></Object>"
            + "<Object><Key>x&amp;y&lt;z&gt;&quot;&apos;</Key></Object></Delete>")
        let md5 = try TestSupport.run("sh", ["-c", "openssl dgst -md5 -binary | openssl base64 -A"], input: Data(body)).output
        #expect(S3Store.contentMD5(body) == md5.trimmingCharacters(in: .whitespacesAndNewlines))

        let settings = try S3Settings(endpoint: "http://127.0.0.1:9", region: "us-east-1", accessKeyID: "a", secretAccessKey: "b",
                                      addressing: .path)
        let store = try S3Store(bucket: "thaw-reply", prefix: "p", settings: settings)
        let clean = """
            <?xml version="1.0" encoding="UTF-8"?>
            <DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Deleted><Key>p/a</Key></Deleted></DeleteResult>
            """
        try store.checkDeleteReply(Array(clean.utf8), requested: 1)
        let mixed = """
            <?xml version="1.0" encoding="UTF-8"?>
            <DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
              <Deleted><Key>p/a</Key></Deleted>
              <Error><Key>p/b</Key><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error>
              <Deleted><Key>p/c</Key></Deleted>
              <Error><Key>p/d</Key><Code>SlowDown</Code><Message>Reduce your request rate.</Message></Error>
            </DeleteResult>
            """
        let passing = #expect(throws: StoreError.self) { try store.checkDeleteReply(Array(mixed.utf8), requested: 4) }
        #expect(passing?.kind == .unavailable)
        #expect(passing?.message == "POST s3://thaw-reply/p/?delete: the server did not delete 2 of 4 objects: "
            + "s3://thaw-reply/p/b (InternalError: We encountered an internal error.), s3://thaw-reply/p/d (SlowDown: Reduce your request rate.)")
        let denied = mixed.replacingOccurrences(of: "<Code>SlowDown</Code>", with: "<Code>AccessDenied</Code>")
        let refused = #expect(throws: StoreError.self) { try store.checkDeleteReply(Array(denied.utf8), requested: 4) }
        #expect(refused?.kind == .rejected)
        let notAResult = "<Error><Code>InternalError</Code><Message>oops</Message></Error>"
        let odd = #expect(throws: StoreError.self) { try store.checkDeleteReply(Array(notAResult.utf8), requested: 4) }
        #expect(odd?.message.contains("without a DeleteResult (InternalError: oops)") == true)
    }

    /// `auto` addressing: virtual-hosted on AWS, path style for dotted bucket names (outside
    /// AWS's wildcard certificate) and for other endpoints; secrets never print.
    @Test func resolvesAddressingAndRedactsSecrets() throws {
        let keys = S3Overrides(region: "eu-west-1", accessKeyID: "AKIDTHAW", secretAccessKey: "SECRETTHAW",
                               sessionToken: "TOKENTHAW", addressingStyle: "auto")
        let aws = try S3Settings.resolve(keys, bucket: "plain-bucket")
        #expect(aws.addressing == .virtual)
        #expect(aws.host == "s3.eu-west-1.amazonaws.com")
        #expect(try S3Settings.resolve(keys, bucket: "dotted.bucket").addressing == .path)
        var local = keys
        local.endpoint = "http://127.0.0.1:9000"
        #expect(try S3Settings.resolve(local, bucket: "plain-bucket").addressing == .path)
        var explicit = keys
        explicit.addressingStyle = "virtual"
        #expect(try S3Settings.resolve(explicit, bucket: "dotted.bucket").addressing == .virtual)

        let printed = "\(aws) \(String(reflecting: aws))"
        var dumped = ""
        dump(aws, to: &dumped)
        #expect(printed.contains("AKIDTHAW"))
        #expect(!printed.contains("SECRETTHAW") && !printed.contains("TOKENTHAW"))
        #expect(!dumped.contains("SECRETTHAW") && !dumped.contains("TOKENTHAW"))
    }
}
