import Foundation
import Testing
import ThawSeal
import ThawTestSupport

/// The sealed patch table of a snapshot's memory: round trips, names its base and deltas
/// without a key, keeps the delta keys sealed, and refuses what is wrong.
@Suite struct PatchTableTests {
    static func table(for manifest: Manifest, indices: [Int]) -> PatchTable {
        let salt = Salt(root: .initial, replica: 0)
        var deltas: [Int: ChunkRef] = [:]
        for index in indices {
            let sealed = ChunkSealer.seal(Array(repeating: UInt8(index), count: 300), salt: salt)
            deltas[index] = ChunkRef(name: sealed.name, key: sealed.key)
        }
        return PatchTable(memoryManifestID: manifest.header.id, baseManifestID: String(repeating: "b", count: 64),
                          chunkCount: manifest.header.chunkCount, deltas: deltas)
    }

    @Test func roundTripsAndShowsOnlyWhatGarbageCollectionNeeds() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let keys = LocalKeyProvider(directory: dir + "/keys")
            let manifest = ManifestTests.sample(chunks: 40)
            let table = Self.table(for: manifest, indices: [31, 2, 17, 0])
            let bytes = try await table.sealed(tenant: manifest.header.tenant, keys: keys)
            #expect(try await PatchTable.open(bytes, for: manifest.header, keys: keys) == table)
            let references = try PatchTable.references(in: bytes)
            #expect(references.memoryManifestID == manifest.header.id && references.baseManifestID == table.baseManifestID)
            #expect(references.deltas.map(\.index) == [0, 2, 17, 31])
            #expect(references.deltas.map(\.name) == [0, 2, 17, 31].map { table.deltas[$0]!.name })
            for ref in table.deltas.values {
                #expect(ManifestTests.find(ref.name.bytes, in: bytes))
                #expect(!ManifestTests.find(ref.key.bytes, in: bytes), "a delta key is sealed")
            }
        }
    }

    @Test func refusesAnotherManifestsTableAndAnyChangedByte() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let keys = LocalKeyProvider(directory: dir + "/keys")
            let manifest = ManifestTests.sample(chunks: 40)
            let bytes = try await Self.table(for: manifest, indices: [1, 5, 9]).sealed(tenant: manifest.header.tenant, keys: keys)
            let wrong = await #expect(throws: SealError.self) {
                try await PatchTable.open(bytes, for: ManifestTests.sample(chunks: 41).header, keys: keys)
            }
            #expect(wrong?.message.contains("belongs to manifest \(manifest.header.id)") == true)
            for position in stride(from: 0, to: bytes.count, by: 5) {
                var changed = bytes
                changed[position] ^= 0x20
                await #expect(throws: SealError.self, "byte \(position)") { try await PatchTable.open(changed, for: manifest.header, keys: keys) }
            }
            for length in [0, 10, bytes.count / 2, bytes.count - 1] {
                await #expect(throws: SealError.self, "cut at \(length)") {
                    try await PatchTable.open(Array(bytes[0..<length]), for: manifest.header, keys: keys)
                }
            }
        }
    }
}
