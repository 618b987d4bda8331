/// What a transmission-phase request asks of the server, once checked against the export.
public enum NBDRequest: Sendable, Hashable {
    /// Read `length` bytes at `offset` (within the export and at most `NBDLimits.maxPayload`)
    /// and send them in a simple reply with `cookie`.
    case read(cookie: UInt64, offset: UInt64, length: Int)
    /// Send an error reply with `cookie` and go on serving: the request was valid NBD but is not
    /// something this export does (a write, a read past the end, an unknown command).
    case refuse(cookie: UInt64, error: NBDErrorCode)
    /// `NBD_CMD_DISC`: finish the requests in flight, send nothing more and close.
    case disconnect
}
