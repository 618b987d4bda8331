/// The type of a transmission-phase request (16 bits).
public struct NBDCommand: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let read = NBDCommand(rawValue: 0)
    public static let write = NBDCommand(rawValue: 1)
    public static let disconnect = NBDCommand(rawValue: 2)
    public static let flush = NBDCommand(rawValue: 3)
    public static let trim = NBDCommand(rawValue: 4)
    public static let cache = NBDCommand(rawValue: 5)
    public static let writeZeroes = NBDCommand(rawValue: 6)
    public static let blockStatus = NBDCommand(rawValue: 7)

    public var description: String {
        switch self {
        case .read: "NBD_CMD_READ"
        case .write: "NBD_CMD_WRITE"
        case .disconnect: "NBD_CMD_DISC"
        case .flush: "NBD_CMD_FLUSH"
        case .trim: "NBD_CMD_TRIM"
        case .cache: "NBD_CMD_CACHE"
        case .writeZeroes: "NBD_CMD_WRITE_ZEROES"
        case .blockStatus: "NBD_CMD_BLOCK_STATUS"
        default: "command \(rawValue)"
        }
    }
}

/// The error field of a reply (32 bits). The protocol fixes these numbers; they match Linux
/// errno values but are not errno, so they are spelled out here.
public struct NBDErrorCode: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Success.
    public static let none = NBDErrorCode(rawValue: 0)
    public static let notPermitted = NBDErrorCode(rawValue: 1)
    public static let io = NBDErrorCode(rawValue: 5)
    public static let noMemory = NBDErrorCode(rawValue: 12)
    public static let invalid = NBDErrorCode(rawValue: 22)
    public static let noSpace = NBDErrorCode(rawValue: 28)
    public static let overflow = NBDErrorCode(rawValue: 75)
    public static let notSupported = NBDErrorCode(rawValue: 95)
    public static let shutdown = NBDErrorCode(rawValue: 108)

    public var description: String {
        switch self {
        case .none: "success"
        case .notPermitted: "NBD_EPERM"
        case .io: "NBD_EIO"
        case .noMemory: "NBD_ENOMEM"
        case .invalid: "NBD_EINVAL"
        case .noSpace: "NBD_ENOSPC"
        case .overflow: "NBD_EOVERFLOW"
        case .notSupported: "NBD_ENOTSUP"
        case .shutdown: "NBD_ESHUTDOWN"
        default: "error \(rawValue)"
        }
    }
}
