import Foundation
import Testing
import ThawLambdaAPI
import ThawMetadata
import ThawSeal

/// `LambdaService` over the real SQLite metadata, with the image side replaced: what these
/// tests check is the metadata's part, not pushing.
struct LambdaServiceTests {
    /// Resolves every image URI after a pause long enough for another request to overlap.
    struct SlowCode: FunctionCodeSource {
        func resolve(imageURI: String) async throws -> ResolvedCode {
            try await Task.sleep(for: .milliseconds(300))
            return ResolvedCode(manifestID: String(repeating: String(imageURI.suffix(1)), count: 64), root: .initial, imageSize: 4096)
        }
    }

    struct NoInvoker: FunctionInvoker {
        func invoke(_ function: FunctionRecord, settings: FunctionSettings, event: [UInt8]) async throws -> InvocationOutcome {
            throw LambdaError.service("not invoked in these tests")
        }
    }

    func create(_ service: LambdaService, uri: String) async throws -> FunctionConfiguration {
        let json = #"{"FunctionName": "racer", "PackageType": "Image", "Code": {"ImageUri": "\#(uri)"}}"#
        return try await service.createFunction(try JSONDecoder().decode(CreateFunctionRequest.self, from: Data(json.utf8)))
    }

    @Test func twoConcurrentCreationsOfOneNameLetExactlyOneThrough() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("thaw-service-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let metadata = try await MetadataLocation.sqlite(path: directory + "/metadata.sqlite").open()
        let service = LambdaService(metadata: metadata, code: SlowCode(), invoker: NoInvoker(), region: "us-east-1")
        func attempt(_ uri: String) async -> Result<FunctionConfiguration, any Error> {
            do { return .success(try await create(service, uri: uri)) } catch { return .failure(error) }
        }
        async let first = attempt("image-a")
        async let second = attempt("image-b")
        let results = await [first, second]
        let created = results.compactMap { try? $0.get() }
        let refused = results.compactMap { result -> LambdaError? in
            if case .failure(let error) = result { return error as? LambdaError }
            return nil
        }
        #expect(created.count == 1)
        #expect(refused.map(\.status) == [409])
        #expect(refused.first?.type == "ResourceConflictException")
        // The name points at the winner's code, with the winner's settings.
        let stored = try #require(try await metadata.function(named: try FunctionName("racer")))
        #expect(stored.manifestID == created.first?.codeSHA256)
        // Once it is made, creating it again is refused, and the lease is free for a new name.
        await #expect(throws: LambdaError.self) { _ = try await create(service, uri: "image-c") }
        try await service.deleteFunction("racer")
        #expect(try await create(service, uri: "image-d").codeSHA256 == String(repeating: "d", count: 64))

        // A move that keeps the name's updatedAt (a relayout, a copy forward) keeps CodeSha256;
        // a push that points the name elsewhere (a new updatedAt) is reported as it is.
        let named = try #require(try await metadata.function(named: try FunctionName("racer")))
        let relaid = String(repeating: "e", count: 64), pushed = String(repeating: "f", count: 64)
        #expect(try await metadata.moveFunction(FunctionRecord(name: named.name, manifestID: relaid, root: .initial, tenant: named.tenant,
                                                               updatedAt: named.updatedAt),
                                                fromManifest: named.manifestID, root: .initial))
        #expect(try await service.getFunction("racer").configuration.codeSHA256 == String(repeating: "d", count: 64))
        #expect(try await service.listFunctions(marker: nil, maxItems: nil).functions.first?.codeSHA256 == String(repeating: "d", count: 64))
        try await metadata.setFunction(FunctionRecord(name: named.name, manifestID: pushed, root: .initial, tenant: named.tenant,
                                                      updatedAt: named.updatedAt.addingTimeInterval(2)))
        #expect(try await service.getFunction("racer").configuration.codeSHA256 == pushed)
        await metadata.close()
    }
}
