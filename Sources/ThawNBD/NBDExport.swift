public import NIOCore

/// A read-only block device the NBD server serves: an image of fixed size whose bytes never
/// change while it is served.
public protocol NBDExport: Sendable {
    /// Size in bytes, read once when a client chooses the export.
    var size: UInt64 { get }

    /// Exactly `length` bytes at `offset`; the server has checked that the range lies inside
    /// the export and that `length` is at most 32 MiB. Reads of one connection run
    /// concurrently. A throw becomes an I/O error for that read alone.
    func read(offset: UInt64, length: Int) async throws -> [UInt8]

    /// The same bytes written onto the end of `buffer` (the reply, after its header), which
    /// saves a copy for exports that produce their bytes piece by piece. The default writes
    /// what `read(offset:length:)` returns. On a throw, what was written is discarded.
    func read(offset: UInt64, length: Int, into buffer: inout ByteBuffer) async throws

    /// Text for people, sent when a client asks for `NBD_INFO_DESCRIPTION`.
    var exportDescription: String? { get }
}

extension NBDExport {
    public var exportDescription: String? { nil }

    public func read(offset: UInt64, length: Int, into buffer: inout ByteBuffer) async throws {
        buffer.writeBytes(try await read(offset: offset, length: length))
    }
}

/// The exports a server offers, looked up by name when a client asks.
public protocol NBDExportCatalog: Sendable {
    /// The export called `name`, or nil. An empty name means the default export.
    func export(named name: String) async -> (any NBDExport)?

    /// The names `NBD_OPT_LIST` reports.
    func exportNames() async -> [String]
}
