/// An option a client sends during fixed newstyle negotiation (32 bits).
///
/// A struct rather than an enum: clients send numbers Thaw does not know, and those must be
/// carried through to an `NBD_REP_ERR_UNSUP` reply naming them.
public struct NBDOption: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let exportName = NBDOption(rawValue: 1)
    public static let abort = NBDOption(rawValue: 2)
    public static let list = NBDOption(rawValue: 3)
    public static let peekExport = NBDOption(rawValue: 4)
    public static let startTLS = NBDOption(rawValue: 5)
    public static let info = NBDOption(rawValue: 6)
    public static let go = NBDOption(rawValue: 7)
    public static let structuredReply = NBDOption(rawValue: 8)
    public static let listMetaContext = NBDOption(rawValue: 9)
    public static let setMetaContext = NBDOption(rawValue: 10)
    public static let extendedHeaders = NBDOption(rawValue: 11)

    public var description: String {
        switch self {
        case .exportName: "NBD_OPT_EXPORT_NAME"
        case .abort: "NBD_OPT_ABORT"
        case .list: "NBD_OPT_LIST"
        case .peekExport: "NBD_OPT_PEEK_EXPORT"
        case .startTLS: "NBD_OPT_STARTTLS"
        case .info: "NBD_OPT_INFO"
        case .go: "NBD_OPT_GO"
        case .structuredReply: "NBD_OPT_STRUCTURED_REPLY"
        case .listMetaContext: "NBD_OPT_LIST_META_CONTEXT"
        case .setMetaContext: "NBD_OPT_SET_META_CONTEXT"
        case .extendedHeaders: "NBD_OPT_EXTENDED_HEADERS"
        default: "option \(rawValue)"
        }
    }
}

/// The type of a reply to an option (32 bits); errors have bit 31 set.
public struct NBDOptionReplyType: RawRepresentable, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let ack = NBDOptionReplyType(rawValue: 1)
    public static let server = NBDOptionReplyType(rawValue: 2)
    public static let info = NBDOptionReplyType(rawValue: 3)
    public static let metaContext = NBDOptionReplyType(rawValue: 4)

    public static let errorUnsupported = NBDOptionReplyType(rawValue: 0x8000_0001)
    public static let errorPolicy = NBDOptionReplyType(rawValue: 0x8000_0002)
    public static let errorInvalid = NBDOptionReplyType(rawValue: 0x8000_0003)
    public static let errorPlatform = NBDOptionReplyType(rawValue: 0x8000_0004)
    public static let errorTLSRequired = NBDOptionReplyType(rawValue: 0x8000_0005)
    public static let errorUnknown = NBDOptionReplyType(rawValue: 0x8000_0006)
    public static let errorShutdown = NBDOptionReplyType(rawValue: 0x8000_0007)
    public static let errorBlockSizeRequired = NBDOptionReplyType(rawValue: 0x8000_0008)
    public static let errorTooBig = NBDOptionReplyType(rawValue: 0x8000_0009)

    public var isError: Bool { rawValue & 0x8000_0000 != 0 }
}

/// An item of information in an `NBD_REP_INFO` reply, and what `NBD_OPT_INFO` and
/// `NBD_OPT_GO` ask for (16 bits).
public struct NBDInfoType: RawRepresentable, Sendable, Hashable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// Size and transmission flags; always sent.
    public static let export = NBDInfoType(rawValue: 0)
    /// The export's canonical name.
    public static let name = NBDInfoType(rawValue: 1)
    /// A description for people.
    public static let description = NBDInfoType(rawValue: 2)
    /// Minimum, preferred and maximum block sizes.
    public static let blockSize = NBDInfoType(rawValue: 3)
}
