import Foundation
import Testing
import ThawSeal
import ThawStore
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
