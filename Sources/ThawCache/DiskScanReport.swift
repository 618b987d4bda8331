/// What opening a disk tier found in its directory.
public struct DiskScanReport: Sendable, Hashable {
    /// Chunk files kept and indexed.
    public var files = 0
    /// Their bytes.
    public var bytes = 0
    /// Temporary files removed: writes that a killed or crashed process never renamed into place.
    public var temporaryFilesRemoved = 0
    /// Files removed because no chunk could be stored that way: a name that is not a chunk
    /// name, a chunk in the wrong folder, a size of zero or above the largest chunk.
    public var invalidFilesRemoved = 0
    /// Chunk files evicted because they did not fit the capacity (the cache was made smaller).
    public var evictedToFit = 0

    public init() {}
}
