#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Checks a directory before a mount goes on it, and remembers which directories this process
/// has mounted, so a second mount at the same place is refused instead of stacked on the first.
enum MountPoint {
    /// The directories with a mount of this process, by resolved path.
    private static let claimed = Mutex<Set<String>>([])

    /// The filesystem type libfuse gives a mount with `subtype=thaw`, as the mount table shows it.
    static let fileSystemType = "fuse.thaw"

    /// `directory` with symbolic links resolved, once it is known to be a directory that can take
    /// a mount.
    static func resolve(_ directory: String) throws(FUSEError) -> String {
        var status = stat()
        guard stat(directory, &status) == 0 else {
            let code = errno
            switch code {
            case ENOENT:
                throw FUSEError(.directoryMissing, path: directory, errno: code, message: "the mount directory does not exist")
            case ENOTCONN:
                throw FUSEError(.staleMount, path: directory, errno: code,
                                message: "the mount directory is a FUSE mount whose server has gone; umount it first")
            default:
                throw FUSEError(.directoryUnusable, path: directory, errno: code, message: "cannot examine the mount directory")
            }
        }
        guard status.st_mode & S_IFMT == S_IFDIR else {
            throw FUSEError(.notADirectory, path: directory, message: "the mount path is not a directory")
        }
        guard let resolved = realpath(directory, nil) else {
            throw FUSEError(.directoryUnusable, path: directory, errno: errno, message: "cannot resolve the mount directory")
        }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// Reserves `mountPoint` for a mount of this process; refused when this or another process
    /// already has a Thaw mount there.
    static func claim(_ mountPoint: String, requested directory: String) throws(FUSEError) {
        let isNew = claimed.withLock { $0.insert(mountPoint).inserted }
        guard isNew else {
            throw FUSEError(.alreadyMounted, path: directory, message: "a Thaw FUSE file system is already mounted here")
        }
        if MountTable.fileSystemType(at: mountPoint) == fileSystemType {
            release(mountPoint)
            throw FUSEError(.alreadyMounted, path: directory,
                            message: "another process has a Thaw FUSE file system mounted here")
        }
    }

    static func release(_ mountPoint: String) {
        _ = claimed.withLock { $0.remove(mountPoint) }
    }
}
