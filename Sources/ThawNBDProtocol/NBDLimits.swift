/// Bounds on what one client may make the server hold or do, so a hostile client costs a
/// fixed amount of memory and work. Going past one is a protocol error that closes the
/// connection.
public struct NBDLimits: Sendable, Hashable {
    /// The most data one option may carry. Real options carry an export name and a few info
    /// requests: a few KiB.
    public var maxOptionData: Int = 64 * 1024
    /// The longest export name, as the protocol's 4096-byte string limit says.
    public var maxExportNameLength: Int = 4096
    /// How many options a client may send before it starts transmission.
    public var maxOptions: Int = 256
    /// The largest read (and the largest write payload skipped); advertised as the maximum
    /// payload in `NBD_INFO_BLOCK_SIZE`.
    public var maxPayload: Int = 32 * 1024 * 1024
    /// Advertised minimum block size: any byte of the export can be read alone.
    public var minimumBlockSize: UInt32 = 1
    /// Advertised preferred block size: the page size, so clients read whole pages.
    public var preferredBlockSize: UInt32 = 4096

    public init() {}
}
