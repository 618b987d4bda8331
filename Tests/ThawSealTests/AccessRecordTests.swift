import Foundation
import Testing
import ThawBinary
import ThawSeal
import ThawTestSupport

/// The sealed access record: round trips, belongs to one manifest, and refuses what is wrong.
@Suite struct AccessRecordTests {
    @Test func roundTripsAndHidesTheOrder() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let keys = LocalKeyProvider(directory: dir + "/keys")
            let manifest = ManifestTests.sample(chunks: 40)
            let record = AccessRecord(manifestID: manifest.header.id, chunkCount: 40, chunks: [7, 3, 39, 0, 12])
            let bytes = try await record.sealed(tenant: manifest.header.tenant, keys: keys)
            #expect(try await AccessRecord.open(bytes, for: manifest.header, keys: keys) == record)
            // The manifest id is public, the order is not.
            #expect(ManifestTests.find(Array(manifest.header.id.utf8), in: bytes))
            var order = ByteWriter()
            for index in record.chunks { order.u32(index) }
            #expect(!ManifestTests.find(order.bytes, in: bytes))
        }
    }

    @Test func refusesAnotherManifestsRecordAndAnyChangedByte() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let keys = LocalKeyProvider(directory: dir + "/keys")
            let manifest = ManifestTests.sample(chunks: 40)
            let other = ManifestTests.sample(chunks: 41)
            let record = AccessRecord(manifestID: manifest.header.id, chunkCount: 40, chunks: [1, 2, 3])
            let bytes = try await record.sealed(tenant: manifest.header.tenant, keys: keys)
            let wrong = await #expect(throws: SealError.self) { try await AccessRecord.open(bytes, for: other.header, keys: keys) }
            #expect(wrong?.message.contains("does not belong to manifest \(other.header.id)") == true)
            for position in stride(from: 0, to: bytes.count, by: 7) {
                var changed = bytes
                changed[position] ^= 0x40
                await #expect(throws: SealError.self, "byte \(position)") {
                    try await AccessRecord.open(changed, for: manifest.header, keys: keys)
                }
            }
            await #expect(throws: SealError.self) {
                try await AccessRecord.open(Array(bytes.dropLast(3)), for: manifest.header, keys: keys)
            }
        }
    }

    @Test func refusesIndicesOutOfRangeOrRepeated() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let keys = LocalKeyProvider(directory: dir + "/keys")
            let manifest = ManifestTests.sample(chunks: 10)
            for chunks: [UInt32] in [[1, 10], [4, 2, 4]] {
                let record = AccessRecord(manifestID: manifest.header.id, chunkCount: 10, chunks: chunks)
                let bytes = try await record.sealed(tenant: manifest.header.tenant, keys: keys)
                let error = await #expect(throws: SealError.self) { try await AccessRecord.open(bytes, for: manifest.header, keys: keys) }
                #expect(error?.kind == .malformedManifest)
                #expect(error?.message.contains("out of range or twice") == true)
            }
        }
    }

    @Test func blockRangesKeepFirstTouchOrderAndJoinOnlyRunsThatFollowOn() {
        let record = AccessRecord(manifestID: "m", chunkCount: 4, chunks: [0], blocks: [
            .init(first: 10, count: 2), .init(first: 12, count: 1),  // follows on: joined
            .init(first: 3, count: 1),  // earlier in the image, later in time: its own range
            .init(first: 5, count: 4),  // a gap of one block: not joined
        ])
        let ranges: [[UInt64]] = record.blockRanges.map { [$0.offset / 4096, UInt64($0.length) / 4096] }
        let expected: [[UInt64]] = [[10, 3], [3, 1], [5, 4]]  // in blocks: offset, length
        #expect(ranges == expected)
        #expect(AccessRecord(manifestID: "m", chunkCount: 4, chunks: [1]).blockRanges.isEmpty)
    }

    @Test func carriesBlockRunsAndStillOpensVersion1() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let keys = LocalKeyProvider(directory: dir + "/keys")
            let manifest = ManifestTests.sample(chunks: 10)
            let blocks: [AccessRecord.BlockRun] = [.init(first: 300, count: 4), .init(first: 0, count: 1), .init(first: 1279, count: 1)]
            let record = AccessRecord(manifestID: manifest.header.id, chunkCount: 10, chunks: [2, 0], blocks: blocks)
            let bytes = try await record.sealed(tenant: manifest.header.tenant, keys: keys)
            #expect(try await AccessRecord.open(bytes, for: manifest.header, keys: keys) == record)
            // A block past the image's 1280 is refused by name.
            let past = AccessRecord(manifestID: manifest.header.id, chunkCount: 10, chunks: [2], blocks: [.init(first: 1279, count: 2)])
            let error = await #expect(throws: SealError.self) {
                try await AccessRecord.open(try await past.sealed(tenant: manifest.header.tenant, keys: keys), for: manifest.header, keys: keys)
            }
            #expect(error?.message.contains("outside the image's 1280 blocks") == true)
            // Records saved before blocks were noted: chunk indices only.
            var publicPart = ByteWriter()
            publicPart.shortString(manifest.header.id)
            publicPart.u32(10)
            var payload = ByteWriter()
            for index: UInt32 in [5, 1] { payload.u32(index) }
            let old = try await SealedObject.seal(kind: .accessRecord, version: 1, publicPart: publicPart.bytes, payload: payload.bytes,
                                                  tenant: manifest.header.tenant, keys: keys)
            let opened = try await AccessRecord.open(old, for: manifest.header, keys: keys)
            #expect(opened.chunks == [5, 1] && opened.blocks.isEmpty)
        }
    }
}
