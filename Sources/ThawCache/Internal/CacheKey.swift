import ThawSeal

/// A chunk name as the key of the cache's tables. `ChunkName`'s synthesised hashing feeds
/// its 32 bytes to the hasher one at a time, which costs more than the rest of a memory hit;
/// this feeds them in one call. Still all 32 bytes, through the per-process seeded hasher.
struct CacheKey: Hashable, Sendable, CustomStringConvertible {
    let name: ChunkName

    init(_ name: ChunkName) { self.name = name }

    func hash(into hasher: inout Hasher) {
        name.bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
    }

    static func == (a: CacheKey, b: CacheKey) -> Bool { a.name.bytes == b.name.bytes }

    var description: String { name.hex }
}
