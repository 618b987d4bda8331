/// A point in time as tar and ext4 record it: seconds since the epoch plus nanoseconds.
public struct Timestamp: Hashable, Sendable, Comparable {
    public var seconds: Int64
    public var nanoseconds: UInt32

    public init(seconds: Int64, nanoseconds: UInt32 = 0) {
        self.seconds = seconds
        self.nanoseconds = nanoseconds
    }

    public static func < (a: Timestamp, b: Timestamp) -> Bool {
        (a.seconds, a.nanoseconds) < (b.seconds, b.nanoseconds)
    }
}

/// One member of a tar archive, with pax and GNU extensions already applied.
///
/// Paths and link names are raw bytes: tar does not promise UTF-8, and ext4 stores bytes.
public struct TarEntry: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case regular
        case hardLink
        case symbolicLink
        case characterDevice
        case blockDevice
        case directory
        case fifo
    }

    public var kind: Kind
    /// The member's path exactly as the archive spells it (not normalized).
    public var path: [UInt8]
    /// Hard-link or symbolic-link target.
    public var linkName: [UInt8]
    /// Permission bits including setuid, setgid and sticky (`mode & 0o7777`).
    public var permissions: UInt16
    public var uid: UInt32
    public var gid: UInt32
    /// Bytes of data that follow the header (zero for everything but regular files).
    public var size: UInt64
    public var modificationTime: Timestamp
    public var deviceMajor: UInt32
    public var deviceMinor: UInt32
    /// Extended attributes from `SCHILY.xattr.*` (and `LIBARCHIVE.xattr.*`) pax records, by full name.
    public var extendedAttributes: [String: [UInt8]]

    public init(
        kind: Kind, path: [UInt8], linkName: [UInt8] = [], permissions: UInt16 = 0o644,
        uid: UInt32 = 0, gid: UInt32 = 0, size: UInt64 = 0,
        modificationTime: Timestamp = Timestamp(seconds: 0),
        deviceMajor: UInt32 = 0, deviceMinor: UInt32 = 0,
        extendedAttributes: [String: [UInt8]] = [:]
    ) {
        self.kind = kind
        self.path = path
        self.linkName = linkName
        self.permissions = permissions
        self.uid = uid
        self.gid = gid
        self.size = size
        self.modificationTime = modificationTime
        self.deviceMajor = deviceMajor
        self.deviceMinor = deviceMinor
        self.extendedAttributes = extendedAttributes
    }

    /// The path as text, for messages.
    public var displayPath: String { String(decoding: path, as: UTF8.self) }
}
