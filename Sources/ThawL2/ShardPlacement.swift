/// Which node holds each shard of a chunk: rendezvous (highest random weight) hashing of the
/// chunk name with each node, so every shard of a chunk is on a different node, and adding or
/// removing a node moves only the shards that node gains or held.
///
/// Pure: the weights come from a 64-bit mix of the chunk name and the node's address, the same
/// in every process.
public struct ShardPlacement: Sendable {
    /// Node addresses (`host:port`), in configuration order.
    public let nodes: [String]
    private let nodeSeeds: [UInt64]

    public init(nodes: [String]) {
        self.nodes = nodes
        nodeSeeds = nodes.map { Self.hash(Array($0.utf8), seed: 0x7468_6177_6c32_0000) }  // "thawl2"
    }

    /// The nodes of `count` shards of `chunk` (its name's bytes), shard 0 first: the nodes with
    /// the highest weights for this chunk, best first. Needs `count <= nodes.count`.
    public func nodes(for chunk: [UInt8], count: Int) -> [Int] {
        precondition(count <= nodes.count, "\(count) shards need at least \(count) nodes, not \(nodes.count)")
        let chunkSeed = Self.hash(chunk, seed: 0x6368_756e_6b00_0000)  // "chunk"
        let weights = nodeSeeds.enumerated().map { (index: $0.offset, weight: Self.mix(chunkSeed ^ $0.element)) }
        return weights.sorted { $0.weight != $1.weight ? $0.weight > $1.weight : $0.index < $1.index }
            .prefix(count).map(\.index)
    }

    /// FNV-1a over the bytes, finished with a mix so nearby inputs spread.
    static func hash(_ bytes: [UInt8], seed: UInt64) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325 ^ seed
        for byte in bytes {
            h ^= UInt64(byte)
            h = h &* 0x0000_0100_0000_01b3
        }
        return mix(h)
    }

    /// SplitMix64's finalizer: every input bit moves every output bit.
    static func mix(_ value: UInt64) -> UInt64 {
        var z = value &+ 0x9e37_79b9_7f4a_7c15
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
