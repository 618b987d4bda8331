import CFuse3
#if canImport(Glibc)
import Glibc
#endif

/// libfuse's table of callbacks for a Thaw mount.
///
/// Each callback is a C function pointer, so none may capture anything: they turn C arguments
/// into Swift values, ask the `MountSession` of the request, and turn its answer back into an
/// errno. Every operation that would change something is refused with EROFS: the files are
/// read-only even where the mount is not (see `FUSEMount.mountOptions`). Anything else not
/// listed (xattrs, locks) gets libfuse's ENOSYS.
enum FUSEOperations {
    /// How long the kernel may trust a name lookup or a file's attributes without asking again.
    /// Files come and go while mounted, so this stays short; file data is cached separately and
    /// for longer (see `OpenFileTable`).
    static let lookupTimeout = 1.0

    static func table() -> fuse_operations {
        var operations = fuse_operations()

        operations.`init` = { connection, config in
            // No readahead of the kernel's own on these files: whoever reads them (a loop
            // device under a filesystem, a VMM) already reads ahead as much as it wants, and
            // every extra page here can cost a chunk fetched from the origin.
            connection?.pointee.max_readahead = 0
            // Reads the kernel sends without a waiting reader (page-cache loads of a restore's
            // recorded memory) are queued here; the default of 12 would let only 12 wait for
            // their chunks at once, each for an origin round trip.
            connection?.pointee.max_background = 64
            connection?.pointee.congestion_threshold = 48
            if let config {
                config.pointee.entry_timeout = FUSEOperations.lookupTimeout
                config.pointee.attr_timeout = FUSEOperations.lookupTimeout
                // Names appear while mounted: a failed lookup must not be remembered.
                config.pointee.negative_timeout = 0
                // Page-cache reuse is decided per open, never for all opens.
                config.pointee.kernel_cache = 0
                config.pointee.auto_cache = 0
            }
            MountSession.current.initialized.fire(())
            return fuse_get_context().pointee.private_data
        }

        operations.getattr = { path, status, info in
            guard let path, let status else { return -EINVAL }
            switch MountSession.current.attributes(of: String(cString: path), handle: info?.pointee.fh) {
            case .success(let attributes):
                status.pointee = attributes
                return 0
            case .failure(let error):
                return error.reply
            }
        }

        operations.readdir = { path, buffer, fill, _, _, _ in
            guard let path, let fill else { return -EINVAL }
            switch MountSession.current.listing(of: String(cString: path)) {
            case .success(let names):
                for name in [".", ".."] + names {
                    let full = name.withCString { fill(buffer, $0, nil, 0, fuse_fill_dir_flags(rawValue: 0)) }
                    if full != 0 { break }
                }
                return 0
            case .failure(let error):
                return error.reply
            }
        }

        operations.open = { path, info in
            guard let path, let info else { return -EINVAL }
            switch MountSession.current.open(String(cString: path), flags: info.pointee.flags) {
            case .success(let opened):
                info.pointee.fh = opened.handle
                info.pointee.keep_cache = opened.keepCache ? 1 : 0
                info.pointee.direct_io = opened.bypassCache ? 1 : 0
                // Nothing is ever written, so closing needs no FLUSH round trip.
                info.pointee.noflush = 1
                return 0
            case .failure(let error):
                return error.reply
            }
        }

        operations.read = { _, buffer, size, offset, info in
            guard let buffer, let info else { return -EINVAL }
            return MountSession.current.read(handle: info.pointee.fh, into: UnsafeMutableRawPointer(buffer),
                                             size: size, offset: Int(offset))
        }

        operations.release = { _, info in
            if let info { MountSession.current.release(handle: info.pointee.fh) }
            return 0
        }

        operations.write = { _, _, _, _, _ in -EROFS }
        operations.create = { _, _, _ in -EROFS }
        operations.mknod = { _, _, _ in -EROFS }
        operations.mkdir = { _, _ in -EROFS }
        operations.unlink = { _ in -EROFS }
        operations.rmdir = { _ in -EROFS }
        operations.symlink = { _, _ in -EROFS }
        operations.link = { _, _ in -EROFS }
        operations.rename = { _, _, _ in -EROFS }
        operations.chmod = { _, _, _ in -EROFS }
        operations.chown = { _, _, _, _ in -EROFS }
        operations.truncate = { _, _, _ in -EROFS }
        operations.utimens = { _, _, _ in -EROFS }
        operations.fallocate = { _, _, _, _, _ in -EROFS }
        operations.setxattr = { _, _, _, _, _ in -EROFS }
        operations.removexattr = { _, _ in -EROFS }

        operations.statfs = { _, statistics in
            guard let statistics else { return -EINVAL }
            statistics.pointee = MountSession.current.statistics()
            return 0
        }

        return operations
    }
}
