/// A snapshot of the L1 cache's counters, for metrics. Each tier is read under its own lock,
/// so the two tiers' figures may be a moment apart.
public struct L1Statistics: Sendable, Hashable {
    public var memory: TierStatistics
    /// nil when the cache has no disk tier.
    public var disk: TierStatistics?
    /// Files on disk whose bytes did not hash to their name when read, and were deleted.
    public var corruptFilesDropped: UInt64
    /// Chunks that could not be written to disk (full disk, permissions); each costs a later
    /// miss, never a failed read.
    public var diskWriteFailures: UInt64
    /// What opening the disk tier found and removed.
    public var diskScan: DiskScanReport?

    public init(memory: TierStatistics, disk: TierStatistics?, corruptFilesDropped: UInt64, diskWriteFailures: UInt64,
                diskScan: DiskScanReport?) {
        self.memory = memory
        self.disk = disk
        self.corruptFilesDropped = corruptFilesDropped
        self.diskWriteFailures = diskWriteFailures
        self.diskScan = diskScan
    }
}
