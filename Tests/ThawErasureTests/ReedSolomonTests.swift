import Testing
@testable import ThawErasure

@Suite struct ReedSolomonTests {
    static func randomShards(_ count: Int, length: Int) -> [[UInt8]] {
        var generator = SystemRandomNumberGenerator()
        return (0..<count).map { _ in (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) } }
    }

    /// Every subset of `0..<n` with `size` members.
    static func subsets(of n: Int, size: Int) -> [[Int]] {
        guard size > 0 else { return [[]] }
        guard n >= size else { return [] }
        return subsets(of: n - 1, size: size) + subsets(of: n - 1, size: size - 1).map { $0 + [n - 1] }
    }

    @Test(arguments: [(4, 1), (4, 2)])
    func everyErasurePatternRebuildsTheData(k: Int, m: Int) throws {
        let code = try ReedSolomon(dataShards: k, parityShards: m)
        let reference = ReferenceCode(k: k, m: m)
        // Small shards: the reference is slow on purpose, and the suite shares two cores.
        for length in [1, 31, 1000, 4096] {
            let data = Self.randomShards(k, length: length)
            let parity = try code.parity(of: data)
            #expect(parity == reference.parity(of: data), "parity differs from the reference at length \(length)")
            let all = data + parity
            for lost in 0...m {
                for pattern in Self.subsets(of: k + m, size: lost) {
                    var shards: [Int: [UInt8]] = [:]
                    for index in 0..<(k + m) where !pattern.contains(index) { shards[index] = all[index] }
                    #expect(try code.data(from: shards) == data, "losing \(pattern) at length \(length)")
                    #expect(reference.data(from: shards) == data)
                }
            }
        }
    }

    @Test func widerCodesAgreeWithTheReferenceOnRandomPatterns() throws {
        for (k, m) in [(2, 1), (6, 3), (10, 4)] {
            let code = try ReedSolomon(dataShards: k, parityShards: m)
            let reference = ReferenceCode(k: k, m: m)
            let data = Self.randomShards(k, length: 1000)
            let parity = try code.parity(of: data)
            #expect(parity == reference.parity(of: data))
            let all = data + parity
            for _ in 0..<20 {
                let kept = Array((0..<(k + m)).shuffled().prefix(k))
                let shards = Dictionary(uniqueKeysWithValues: kept.map { ($0, all[$0]) })
                #expect(try code.data(from: shards) == data)
            }
        }
    }

    @Test func badInputIsAClearError() throws {
        #expect(throws: ErasureError.self) { try ReedSolomon(dataShards: 0, parityShards: 1) }
        #expect(throws: ErasureError.self) { try ReedSolomon(dataShards: 200, parityShards: 56) }
        let code = try ReedSolomon(dataShards: 4, parityShards: 1)
        #expect { try code.parity(of: Self.randomShards(3, length: 8)) } throws: { ($0 as? ErasureError)?.kind == .invalidShards }
        #expect { try code.parity(of: [[1], [2], [3], [4, 5]]) } throws: { ($0 as? ErasureError)?.kind == .invalidShards }
        let data = Self.randomShards(4, length: 16)
        #expect { try code.data(from: [0: data[0], 1: data[1], 2: data[2]]) } throws: {
            ($0 as? ErasureError)?.kind == .notEnoughShards
        }
        #expect { try code.data(from: [0: data[0], 1: data[1], 2: data[2], 9: data[3]]) } throws: {
            ($0 as? ErasureError)?.kind == .invalidShards
        }
    }
}
