/// Flags the server sends in its greeting (16 bits).
public struct NBDHandshakeFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// The server speaks fixed newstyle negotiation.
    public static let fixedNewstyle = NBDHandshakeFlags(rawValue: 1 << 0)
    /// The server may leave out the 124 zero bytes after `NBD_OPT_EXPORT_NAME`.
    public static let noZeroes = NBDHandshakeFlags(rawValue: 1 << 1)
}

/// Flags the client answers the greeting with (32 bits).
public struct NBDClientFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// The client speaks fixed newstyle negotiation.
    public static let fixedNewstyle = NBDClientFlags(rawValue: 1 << 0)
    /// The client does not want the 124 zero bytes after `NBD_OPT_EXPORT_NAME`.
    public static let noZeroes = NBDClientFlags(rawValue: 1 << 1)
}

/// Flags that describe an export to the client in the transmission phase (16 bits).
public struct NBDTransmissionFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// Always set: the other flags are meaningful.
    public static let hasFlags = NBDTransmissionFlags(rawValue: 1 << 0)
    public static let readOnly = NBDTransmissionFlags(rawValue: 1 << 1)
    public static let sendFlush = NBDTransmissionFlags(rawValue: 1 << 2)
    public static let sendFUA = NBDTransmissionFlags(rawValue: 1 << 3)
    public static let rotational = NBDTransmissionFlags(rawValue: 1 << 4)
    public static let sendTrim = NBDTransmissionFlags(rawValue: 1 << 5)
    public static let sendWriteZeroes = NBDTransmissionFlags(rawValue: 1 << 6)
    public static let sendDF = NBDTransmissionFlags(rawValue: 1 << 7)
    /// Every connection sees the same bytes, so a client may spread its reads over several.
    public static let canMultiConn = NBDTransmissionFlags(rawValue: 1 << 8)
    public static let sendCache = NBDTransmissionFlags(rawValue: 1 << 10)

    /// What Thaw's exports are: read-only images whose bytes never change, so several
    /// connections to one export always agree. Writes, flushes, trims and caching hints are
    /// not offered.
    public static let thawExport: NBDTransmissionFlags = [.hasFlags, .readOnly, .canMultiConn]
}

/// Flags a client may set on a transmission-phase request (16 bits).
public struct NBDCommandFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let fua = NBDCommandFlags(rawValue: 1 << 0)
    public static let noHole = NBDCommandFlags(rawValue: 1 << 1)
    public static let dontFragment = NBDCommandFlags(rawValue: 1 << 2)
    public static let requestOne = NBDCommandFlags(rawValue: 1 << 3)
    public static let fastZero = NBDCommandFlags(rawValue: 1 << 4)
}
