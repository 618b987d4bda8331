import ThawErasure

/// One shard of a chunk as memcached stores it: a small header, so a value found under a key
/// says what it is, then the shard's bytes.
///
/// ```
/// "THS1" | k u8 | m u8 | shard index u8 | reserved u8 | chunk length u32 LE | shard bytes
/// ```
/// Shards are `ceil(length / k)` bytes; the last data shard is padded with zeros, which the
/// chunk length removes again. A shard is not checked alone: the rebuilt chunk is checked
/// against its name, and a bad shard makes that check fail.
enum ShardFormat {
    static let magic: [UInt8] = Array("THS1".utf8)
    static let headerSize = 12

    static func shardLength(chunkLength: Int, k: Int) -> Int { (chunkLength + k - 1) / k }

    /// The k data shards of `chunk`, the last padded.
    static func split(_ chunk: [UInt8], k: Int) -> [[UInt8]] {
        let length = shardLength(chunkLength: chunk.count, k: k)
        return (0..<k).map { i in
            let start = min(i * length, chunk.count)
            let end = min(start + length, chunk.count)
            var shard = Array(chunk[start..<end])
            shard += [UInt8](repeating: 0, count: length - shard.count)
            return shard
        }
    }

    static func encode(_ shard: [UInt8], index: Int, k: Int, m: Int, chunkLength: Int) -> [UInt8] {
        var value = magic + [UInt8(k), UInt8(m), UInt8(index), 0]
        for i in 0..<4 { value.append(UInt8(truncatingIfNeeded: chunkLength >> (8 * i))) }
        return value + shard
    }

    /// The shard's bytes, if `value` is a shard `index` of a (k, m) chunk of a plausible length.
    static func decode(_ value: [UInt8], index: Int, k: Int, m: Int) -> (shard: [UInt8], chunkLength: Int)? {
        guard value.count >= headerSize, value.starts(with: magic), value[4] == UInt8(k), value[5] == UInt8(m),
              value[6] == UInt8(index) else { return nil }
        let chunkLength = (0..<4).reduce(0) { $0 | Int(value[8 + $1]) << (8 * $1) }
        let shard = Array(value[headerSize...])
        guard shard.count == shardLength(chunkLength: chunkLength, k: k) else { return nil }
        return (shard, chunkLength)
    }
}
