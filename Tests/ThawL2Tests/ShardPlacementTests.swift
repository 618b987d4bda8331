import Testing
@testable import ThawL2

@Suite struct ShardPlacementTests {
    /// A distinct 32-byte name for every `i`.
    static func chunk(_ i: Int) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: i >> (8 * $0)) } + [UInt8](repeating: 0x5a, count: 24)
    }

    @Test func shardsGoToDistinctNodesAndSpreadEvenly() {
        let placement = ShardPlacement(nodes: (0..<5).map { "127.0.0.1:\(11211 + $0)" })
        var load = [Int](repeating: 0, count: 5)
        for i in 0..<10_000 {
            let nodes = placement.nodes(for: Self.chunk(i), count: 5)
            #expect(Set(nodes).count == 5)
            load[nodes[0]] += 1
        }
        // Each node leads about a fifth of the chunks (2,000 ± 10%).
        #expect(load.allSatisfy { (1800...2200).contains($0) }, "leaders per node: \(load)")
    }

    @Test func addingANodeMovesOnlyItsShare() {
        let five = ShardPlacement(nodes: (0..<5).map { "n\($0)" })
        let six = ShardPlacement(nodes: (0..<6).map { "n\($0)" })
        var moved = 0
        for i in 0..<6_000 {
            let before = five.nodes(for: Self.chunk(i), count: 1)[0]
            let after = six.nodes(for: Self.chunk(i), count: 1)[0]
            if before != after {
                moved += 1
                #expect(after == 5, "a chunk moved between old nodes")
            }
        }
        // About a sixth of the chunks move to the new node.
        #expect((800...1200).contains(moved), "\(moved) moved")
    }

    @Test func removingANodeMovesOnlyWhatItHeld() {
        let five = ShardPlacement(nodes: (0..<5).map { "n\($0)" })
        let four = ShardPlacement(nodes: ["n0", "n1", "n3", "n4"])
        let map = [0, 1, 3, 4]
        for i in 0..<3_000 {
            let before = five.nodes(for: Self.chunk(i), count: 1)[0]
            let after = map[four.nodes(for: Self.chunk(i), count: 1)[0]]
            if before != 2 { #expect(before == after) }
        }
    }
}
