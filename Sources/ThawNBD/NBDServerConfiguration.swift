public import ThawNBDProtocol

/// How much an NBD server lets each connection hold at once.
public struct NBDServerConfiguration: Sendable {
    /// Protocol limits: option sizes, export names, options before transmission, payload size.
    public var limits = NBDLimits()
    /// Reads of one connection served at once; further requests wait, unread, in the socket.
    public var maxReadsInFlight = 16
    /// Bytes of read replies one connection may hold at once (a single read is always allowed),
    /// so sixteen 32 MiB reads cannot make one client cost half a gigabyte.
    public var maxBytesInFlight = 64 * 1024 * 1024
    /// A client that has not finished the handshake by then is disconnected, so idle or slow
    /// connections cannot pile up.
    public var handshakeTimeout: Duration = .seconds(30)
    /// Connections served at once; more are closed as they arrive. With the bytes in flight
    /// this bounds what the clients can make the server hold.
    public var maxConnections = 256
    /// Pending connections the listening socket holds.
    public var backlog: Int32 = 128

    public init() {}
}
