/// One inode of the filesystem being built; hard links are several directory entries that
/// share one `FileNode`.
///
/// File content is not held here: a regular file points at the blocks where its data was
/// already written (``dataRuns``), so a tree for a multi-gigabyte image stays small.
public final class FileNode {
    public enum Kind: Sendable, Equatable {
        case regular
        case directory
        case symbolicLink
        case characterDevice
        case blockDevice
        case fifo
        case socket
    }

    public var kind: Kind
    /// Permission bits including setuid, setgid and sticky.
    public var permissions: UInt16
    public var uid: UInt32
    public var gid: UInt32
    /// Modification time; ext4's access, change and creation times are set to it too.
    public var seconds: Int64
    public var nanoseconds: UInt32
    /// Regular files: logical size in bytes.
    public var size: UInt64 = 0
    /// Regular files: where the content lies, in file order, in filesystem blocks.
    public var dataRuns: [BlockRun] = []
    public var symlinkTarget: [UInt8] = []
    public var deviceMajor: UInt32 = 0
    public var deviceMinor: UInt32 = 0
    /// Extended attributes by full name (`security.capability`, `user.x`).
    public var extendedAttributes: [String: [UInt8]] = [:]
    /// Directories: entries by name.
    public var children: [[UInt8]: DirectoryEntry] = [:]

    public init(kind: Kind, permissions: UInt16, uid: UInt32 = 0, gid: UInt32 = 0, seconds: Int64 = 0, nanoseconds: UInt32 = 0) {
        self.kind = kind
        self.permissions = permissions
        self.uid = uid
        self.gid = gid
        self.seconds = seconds
        self.nanoseconds = nanoseconds
    }

    /// Children sorted by name bytes: the order Thaw writes them in, whatever the input order.
    public var sortedChildren: [(name: [UInt8], entry: DirectoryEntry)] {
        children.map { ($0.key, $0.value) }.sorted { $0.name.lexicographicallyPrecedes($1.name) }
    }
}

/// A name in a directory, pointing at a node; `layer` records which image layer last wrote it
/// (whiteouts and opaque directories hide only what lower layers wrote).
public struct DirectoryEntry {
    public var node: FileNode
    public var layer: Int

    public init(node: FileNode, layer: Int) {
        self.node = node
        self.layer = layer
    }
}

/// A run of consecutive filesystem blocks.
public struct BlockRun: Hashable, Sendable {
    public var start: UInt64
    public var count: UInt64

    public init(start: UInt64, count: UInt64) {
        self.start = start
        self.count = count
    }
}
