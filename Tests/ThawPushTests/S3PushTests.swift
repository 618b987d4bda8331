import Foundation
import Testing
import ThawTestSupport

/// `thaw push` and `thaw pull` against a real S3-compatible server, through the command line,
/// with the faults a network store has.
@Suite(.serialized) struct S3PushTests {
    @Test func pushAndPullThroughS3SurviveFaultsAndRefuseCorruption() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let server = try S3TestServer()
            let proxy = try S3FaultProxy(upstream: server.endpoint)
            try server.aws(["s3api", "create-bucket", "--bucket", "thaw-push"])
            try Fixtures.make("full", in: dir + "/oci")
            try Fixtures.make("shared-a", in: dir + "/oci")
            var env = server.awsEnvironment
            env["THAW_HOME"] = dir + "/home"
            let store = ["--store", "s3://thaw-push/images", "--endpoint", proxy.endpoint]

            // Errors for a while during the push: retried, and the push completes.
            try proxy.fail(status: 500, count: 6)
            let pushed = try TestSupport.thaw(["push", "oci:\(dir)/oci:full"] + store, environment: env)
            #expect(try proxy.faultsServed() == 6)
            let id = try #require(KilledPushTests.manifestID(in: pushed.output))
            try TestSupport.thaw(["pull", id, "-o", dir + "/pulled.ext4"] + store, environment: env)
            try TestSupport.thaw(["flatten", "oci:\(dir)/oci:full", "-o", dir + "/flat.ext4"])
            #expect(FileManager.default.contentsEqual(atPath: dir + "/pulled.ext4", andPath: dir + "/flat.ext4"))
            let inspect = try TestSupport.thaw(["inspect", id] + store, environment: env).output
            #expect(inspect.contains("layers: 4"))

            // The chunks are there for the AWS CLI too, named by their SHA-256.
            let listing = try server.aws(["s3api", "list-objects-v2", "--bucket", "thaw-push", "--prefix", "images/roots/r0001/chunks/",
                                          "--query", "Contents[].Key", "--output", "text"]).output
            let keys = listing.split(whereSeparator: { $0 == "\t" || $0 == "\n" }).map(String.init).filter { $0.hasPrefix("images/") }
            #expect(keys.count > 3)
            let victim = keys[1]
            try server.aws(["s3api", "get-object", "--bucket", "thaw-push", "--key", victim, dir + "/chunk"])
            let digest = String(try TestSupport.run("sha256sum", [dir + "/chunk"]).output.prefix(64))
            #expect(victim.hasSuffix(digest))

            // A chunk corrupted in the store: pull names it and the store, writes nothing.
            try Data("garbage".utf8).write(to: URL(fileURLWithPath: dir + "/garbage"))
            try server.aws(["s3api", "put-object", "--bucket", "thaw-push", "--key", victim, "--body", dir + "/garbage"])
            let corrupt = try TestSupport.thaw(["pull", id, "-o", dir + "/bad.ext4"] + store, environment: env, check: false)
            #expect(corrupt.status != 0)
            #expect(corrupt.output.contains(digest))
            #expect(corrupt.output.contains("s3://thaw-push/images"))
            #expect(!FileManager.default.fileExists(atPath: dir + "/bad.ext4"))

            // A server that is down: a clear error after the retries.
            server.stop()
            let down = try TestSupport.thaw(["push", "oci:\(dir)/oci:shared-a"] + store, environment: env, check: false)
            #expect(down.status != 0)
            #expect(down.output.contains("attempts"))
        }
    }
}
