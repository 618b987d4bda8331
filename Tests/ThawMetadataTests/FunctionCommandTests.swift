import Foundation
import Testing
import ThawMetadata
import ThawSeal
import ThawTestSupport

/// `thaw push --name`, `thaw functions list` and `thaw functions rm` as real processes, with the
/// metadata in the default SQLite file beside the store and in a real PostgreSQL server.
@Suite(.timeLimit(.minutes(10))) struct FunctionCommandTests {
    @Test(arguments: MetadataStoreTests.Backend.allCases) func pushNamesAManifestAndTheNameCanMoveAndGo(_ backend: MetadataStoreTests.Backend) async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            try Fixtures.make("full", in: dir + "/oci")
            try Fixtures.make("shared-a", in: dir + "/oci")
            var server: PostgresServer?
            var common = ["--store", dir + "/store", "--keys", dir + "/keys"]
            let location: MetadataLocation
            switch backend {
            case .sqlite:
                location = .sqlite(path: dir + "/store.metadata.sqlite")
            case .postgres:
                let started = try await PostgresServer.start()
                server = started
                let url = try await started.createDatabase("thaw_cli")
                common += ["--metadata", url]
                location = try MetadataLocation(parsing: url)
            }
            func manifestID(_ output: String) throws -> String {
                let line = try #require(output.split(separator: "\n").first { $0.contains(" as manifest ") })
                return String(line.split(separator: " ").last!)
            }
            let first = try TestSupport.thaw(["push", "oci:\(dir)/oci:full", "--name", "hello"] + common)
            let firstID = try manifestID(first.output)
            #expect(first.output.contains("name: hello → \(firstID)"), "\(first.output)")
            var list = try TestSupport.thaw(["functions", "list"] + common).output
            #expect(list.contains("hello") && list.contains(String(firstID.prefix(16))), "\(list)")

            // The name moves to the new manifest; the old manifest stays recorded.
            let second = try TestSupport.thaw(["push", "oci:\(dir)/oci:shared-a", "--name", "hello"] + common)
            let secondID = try manifestID(second.output)
            #expect(secondID != firstID)
            let json = try TestSupport.thaw(["functions", "list", "--json"] + common).output
            let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
            #expect(object?["manifest"] as? String == secondID && object?["root"] as? String == RootID.initial.value, "\(json)")
            let store = try await location.open()
            let manifests: [String]
            do {
                manifests = try await store.manifests(in: .initial).map(\.id)
            } catch {
                await store.close()
                throw error
            }
            await store.close()
            #expect(Set(manifests) == [firstID, secondID])

            // Bad names, and removing a name that is not there, are clear errors.
            let bad = try TestSupport.thaw(["push", "oci:\(dir)/oci:full", "--name", "a/b"] + common, check: false)
            #expect(bad.status != 0 && bad.output.contains("function name 'a/b'"), "\(bad.output)")
            #expect(try TestSupport.thaw(["functions", "rm", "hello"] + common).output.contains("removed function hello"))
            let again = try TestSupport.thaw(["functions", "rm", "hello"] + common, check: false)
            #expect(again.status != 0 && again.output.contains("no function named hello"), "\(again.output)")
            list = try TestSupport.thaw(["functions", "list"] + common).output
            #expect(list.contains("no function names"), "\(list)")
            withExtendedLifetime(server) {}
        }
    }

    @Test func anUnreachableMetadataServerStopsAPushBeforeItUploads() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            try Fixtures.make("full", in: dir + "/oci")
            let port = try TestSupport.freePort()
            let result = try TestSupport.thaw(["push", "oci:\(dir)/oci:full", "--store", dir + "/store", "--keys", dir + "/keys",
                                               "--metadata", "postgres://thaw@127.0.0.1:\(port)/thaw"], check: false)
            #expect(result.status != 0 && result.output.contains("127.0.0.1:\(port)"), "\(result.output)")
            let chunks = (try? FileManager.default.subpathsOfDirectory(atPath: dir + "/store")) ?? []
            #expect(chunks.filter { $0.contains("/chunks/") }.isEmpty, "chunks were uploaded: \(chunks.prefix(3))")
        }
    }
}
