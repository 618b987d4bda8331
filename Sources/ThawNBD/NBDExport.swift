/// A read-only block device the NBD server serves: an image of fixed size whose bytes never
/// change while it is served.
public protocol NBDExport: Sendable {
    /// Size in bytes, read once when a client chooses the export.
    var size: UInt64 { get }

    /// Exactly `length` bytes at `offset`; the server has checked that the range lies inside
    /// the export and that `length` is at most 32 MiB. Reads of one connection run
    /// concurrently. A throw becomes an I/O error for that read alone.
    func read(offset: UInt64, length: Int) async throws -> [UInt8]

    /// Text for people, sent when a client asks for `NBD_INFO_DESCRIPTION`.
    var exportDescription: String? { get }
}

extension NBDExport {
    public var exportDescription: String? { nil }
}

/// The exports a server offers, looked up by name when a client asks.
public protocol NBDExportCatalog: Sendable {
    /// The export called `name`, or nil. An empty name means the default export.
    func export(named name: String) async -> (any NBDExport)?

    /// The names `NBD_OPT_LIST` reports.
    func exportNames() async -> [String]
}
