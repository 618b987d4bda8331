/// The sizes, place and policy of a worker's L1 cache.
public struct L1Configuration: Sendable, Hashable {
    /// The most bytes of ciphertext held in memory.
    public var memoryCapacity: Int
    /// The most bytes of chunk files on disk (temporary files being written come on top, at
    /// most one chunk per concurrent write).
    public var diskCapacity: Int
    /// Where chunk files live; nil for a cache in memory only.
    public var diskDirectory: String?
    /// The eviction policy of both tiers, each with its own instance. LRU-K's periods count
    /// the references that tier sees: for memory, hits and insertions; for disk, every hit in
    /// either tier and every insertion.
    public var policy: EvictionPolicyChoice
    /// No chunk is larger; a disk file above it is corrupt by definition.
    public var maximumChunkBytes: Int

    public init(memoryCapacity: Int, diskCapacity: Int = 0, diskDirectory: String? = nil,
                policy: EvictionPolicyChoice = .default, maximumChunkBytes: Int = DiskTier.largestChunk) {
        self.memoryCapacity = memoryCapacity
        self.diskCapacity = diskCapacity
        self.diskDirectory = diskDirectory
        self.policy = policy
        self.maximumChunkBytes = maximumChunkBytes
    }
}
