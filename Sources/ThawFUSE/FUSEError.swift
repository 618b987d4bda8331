/// Why a FUSE mount or a file name was refused, naming the directory or name involved so that a
/// log line alone says what to fix.
public struct FUSEError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong, for callers that react differently to each.
    public enum Kind: Sendable, Equatable {
        /// The name cannot be one entry of a flat directory: empty, ".", "..", containing "/" or
        /// NUL, or longer than the kernel's 255-byte limit.
        case invalidName
        /// The mount directory does not exist.
        case directoryMissing
        /// The mount path exists but is not a directory.
        case notADirectory
        /// The mount path cannot be examined (permissions, I/O error); `errno` says why.
        case directoryUnusable
        /// A Thaw FUSE file system is already mounted at the directory.
        case alreadyMounted
        /// The directory is a FUSE mount whose server has gone (a process that died without
        /// unmounting); `umount` it first.
        case staleMount
        /// libfuse refused the mount options or could not set itself up.
        case setupFailed
        /// The kernel refused the mount.
        case mountFailed
        /// The thread that serves requests could not be started.
        case threadFailed
        /// The kernel never completed the FUSE handshake, or the serving loop ended before it.
        case handshakeFailed
    }

    public var kind: Kind
    /// The mount directory or the file name the error is about.
    public var path: String
    /// The system error number behind the failure, when there is one.
    public var errno: Int32?
    /// A sentence on what happened.
    public var message: String

    public init(_ kind: Kind, path: String, errno: Int32? = nil, message: String) {
        self.kind = kind
        self.path = path
        self.errno = errno
        self.message = message
    }

    public var description: String {
        guard let errno else { return "\(message): \(path)" }
        return "\(message): \(path) (errno \(errno))"
    }
}
