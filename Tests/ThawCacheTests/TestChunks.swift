import ThawSeal

/// Made-up ciphertext for cache tests: deterministic bytes per index, named by their SHA-256
/// as real chunks are.
enum TestChunks {
    static func bytes(_ index: Int, size: Int = 4096) -> [UInt8] {
        var state = UInt64(truncatingIfNeeded: index) &* 0x9E37_79B9_7F4A_7C15 &+ 1
        return (0..<size).map { _ in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(truncatingIfNeeded: state >> 56)
        }
    }

    static func chunk(_ index: Int, size: Int = 4096) -> (name: ChunkName, bytes: [UInt8]) {
        let bytes = bytes(index, size: size)
        return (ChunkName.of(bytes), bytes)
    }
}
