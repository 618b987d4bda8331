/// A read-only file a FUSE mount serves: fixed size, bytes never change while mounted.
///
/// Because the bytes never change, the kernel may keep what it has read in its page cache for
/// as long as the file stays the same, so repeated reads (a VMM's, or a loop device's) cost no
/// call into Swift at all.
public protocol FUSEFile: Sendable {
    /// The file's length in bytes, as `stat` reports it.
    var size: UInt64 { get }

    /// Exactly `min(length, size - offset)` bytes at `offset`; the mount never asks past the end.
    ///
    /// A throw becomes `EIO` for that read alone: the mount and other reads go on.
    func read(offset: UInt64, length: Int) async throws -> [UInt8]

    /// The same bytes when they can be had at once on the calling thread (from memory), else
    /// nil and the mount calls `read`. A libfuse thread thus answers a hit without handing it
    /// to a task and waiting for it, a hop that costs more than the copy.
    func readNow(offset: UInt64, length: Int) -> [UInt8]?
}

extension FUSEFile {
    public func readNow(offset: UInt64, length: Int) -> [UInt8]? { nil }
}
