import CFuse3
#if canImport(Glibc)
import Glibc
#endif
import Logging

/// What libfuse's callbacks reach through `private_data`: one mount's catalog, open files and
/// handshake signal, and the answers to each kind of request.
///
/// Callbacks are plain C functions on libfuse's threads; they find the session of the request
/// they serve with `MountSession.current` and leave all the work to it.
final class MountSession: Sendable {
    let fileSystem: FUSEFileSystem
    let openFiles = OpenFileTable()
    /// Fired by the `init` callback: the kernel has finished the FUSE handshake.
    let initialized = Signal<Void>()
    let logger: Logger

    /// Large enough that tools such as `cp` and `cat` read a FUSE request's worth at a time.
    static let preferredIOSize = 128 * 1024

    init(fileSystem: FUSEFileSystem, logger: Logger) {
        self.fileSystem = fileSystem
        self.logger = logger
    }

    /// The session of the mount whose request the calling libfuse thread is serving.
    static var current: MountSession {
        let data = fuse_get_context().pointee.private_data!
        return Unmanaged<MountSession>.fromOpaque(data).takeUnretainedValue()
    }

    /// The file name a request path names, or nil for the root ("/").
    private static func name(in path: String) -> Substring? {
        path == "/" ? nil : path.dropFirst()
    }

    func attributes(of path: String, handle: UInt64?) -> Result<stat, RequestError> {
        var status = stat()
        status.st_uid = 0
        status.st_gid = 0
        status.st_blksize = Self.preferredIOSize
        guard let name = Self.name(in: path) else {
            status.st_mode = S_IFDIR | 0o555
            status.st_nlink = 2
            status.st_mtim = timespec(tv_sec: fileSystem.createdAt, tv_nsec: 0)
            status.st_ctim = status.st_mtim
            status.st_atim = status.st_mtim
            return .success(status)
        }
        // An open file answers for itself, so `fstat` agrees with its reads after a replacement.
        let entry = handle.flatMap { openFiles.file($0)?.entry } ?? fileSystem.entry(named: String(name))
        guard let entry else { return .failure(RequestError(code: ENOENT)) }
        let size = entry.file.size
        status.st_mode = S_IFREG | 0o444
        status.st_nlink = 1
        status.st_size = Int(clamping: size)
        status.st_blocks = Int(clamping: (size + 511) / 512)
        status.st_mtim = timespec(tv_sec: entry.addedAt, tv_nsec: 0)
        status.st_ctim = status.st_mtim
        status.st_atim = status.st_mtim
        return .success(status)
    }

    /// The names in the directory at `path`, sorted; only the root is a directory.
    func listing(of path: String) -> Result<[String], RequestError> {
        guard let name = Self.name(in: path) else { return .success(fileSystem.names) }
        return .failure(RequestError(code: fileSystem.entry(named: String(name)) == nil ? ENOENT : ENOTDIR))
    }

    func open(_ path: String, flags: Int32) -> Result<OpenFileTable.Opened, RequestError> {
        guard let name = Self.name(in: path) else { return .failure(RequestError(code: EISDIR)) }
        // Files are read-only; only a file served for private mapping may be opened for writing,
        // and its writes fail all the same.
        guard flags & O_ACCMODE == O_RDONLY || fileSystem.entry(named: String(name))?.writableOpens == true,
              flags & O_TRUNC == 0 else { return .failure(RequestError(code: EROFS)) }
        guard let opened = openFiles.open(String(name), in: fileSystem) else {
            return .failure(RequestError(code: ENOENT))
        }
        return .success(opened)
    }

    /// Copies up to `size` bytes at `offset` into `buffer` and returns how many; 0 at or past
    /// the end. What the file has in memory is read on this libfuse thread (`readNow`); for the
    /// rest, the file's async `read` runs as a task while this thread waits.
    func read(handle: UInt64, into buffer: UnsafeMutableRawPointer, size: Int, offset: Int) -> Int32 {
        guard let open = openFiles.file(handle) else { return RequestError(code: EBADF).reply }
        guard offset >= 0 else { return RequestError(code: EINVAL).reply }
        let file = open.entry.file
        let fileSize = file.size
        guard size > 0, UInt64(offset) < fileSize else { return 0 }
        let length = Int(min(UInt64(size), fileSize - UInt64(offset)))
        let start = UInt64(offset)
        if let bytes = file.readNow(offset: start, length: length), bytes.count == length {
            bytes.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress!, byteCount: length) }
            return Int32(length)
        }
        let failure: String
        switch BlockingAwait.result(of: { try await file.read(offset: start, length: length) }) {
        case .success(let bytes) where bytes.count == length:
            bytes.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress!, byteCount: length) }
            return Int32(length)
        case .success(let bytes):
            // Fewer bytes would read as the end of the file and more would be lost; neither may
            // reach the page cache as if it were the file.
            failure = "the file returned \(bytes.count) bytes"
        case .failure(let error):
            failure = "\(error)"
        }
        logger.error("FUSE read failed; answering EIO", metadata: [
            "name": "\(open.name)", "offset": "\(offset)", "length": "\(length)", "error": "\(failure)",
        ])
        return RequestError(code: EIO).reply
    }

    func release(handle: UInt64) {
        openFiles.close(handle)
    }

    func statistics() -> statvfs {
        let entries = fileSystem.entries
        let blockSize: UInt64 = 4096
        let blocks = entries.reduce(UInt64(0)) { $0 + ($1.entry.file.size + blockSize - 1) / blockSize }
        var statistics = statvfs()
        statistics.f_bsize = UInt(blockSize)
        statistics.f_frsize = UInt(blockSize)
        statistics.f_blocks = fsblkcnt_t(blocks)
        statistics.f_files = fsfilcnt_t(entries.count + 1)
        statistics.f_namemax = UInt(FUSEFileSystem.longestName)
        return statistics
    }
}
