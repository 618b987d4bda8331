import Glibc

/// The blocking file operations of the disk tier, on paths. Nothing here fsyncs: a cache can
/// lose a chunk at a power failure, and every read is checked against the chunk's name anyway.
enum ChunkFiles {
    /// Marks files being written; the tier never indexes them and removes them when it opens.
    static let temporaryMarker = ".tmp-"

    /// Which file a descriptor reads, so that a file found corrupt is deleted only if nobody
    /// has put a new copy in its place since.
    struct Identity: Equatable {
        var device: UInt64
        var inode: UInt64

        init(_ info: stat) {
            device = UInt64(info.st_dev)
            inode = UInt64(info.st_ino)
        }
    }

    enum ReadResult {
        case missing
        case bytes([UInt8], Identity)
        /// Larger than any chunk: not read.
        case oversized(Identity)
    }

    static func read(_ path: String, limit: Int) throws -> ReadResult {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            if errno == ENOENT || errno == ENOTDIR { return .missing }
            throw failure("cannot open", path)
        }
        defer { close(descriptor) }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { throw failure("cannot stat", path) }
        let identity = Identity(info)
        let size = Int(info.st_size)
        guard size <= limit else { return .oversized(identity) }
        let bytes = try [UInt8](unsafeUninitializedCapacity: size) { buffer, filled in
            filled = 0
            while filled < size {
                let n = pread(descriptor, buffer.baseAddress! + filled, size - filled, off_t(filled))
                if n < 0 && errno == EINTR { continue }
                guard n >= 0 else { throw failure("cannot read", path) }
                if n == 0 { break }  // shorter than it was a moment ago: the hash will tell
                filled += n
            }
        }
        return .bytes(bytes, identity)
    }

    /// Writes `bytes` to a new temporary file beside `destination`, creating the folder if
    /// needed, and returns the temporary file's path.
    static func writeTemporary(_ bytes: [UInt8], beside destination: String) throws -> String {
        var random = SystemRandomNumberGenerator()
        let temporary = destination + temporaryMarker + String(random.next() as UInt64, radix: 36)
        var descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        if descriptor < 0 && errno == ENOENT {
            try makeDirectories(String(destination[..<destination.lastIndex(of: "/")!]))
            descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        }
        guard descriptor >= 0 else { throw failure("cannot create", temporary) }
        var written = 0
        let ok = bytes.withUnsafeBytes { raw in
            while written < raw.count {
                let n = write(descriptor, raw.baseAddress! + written, raw.count - written)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { return false }
                written += n
            }
            return true
        }
        let error = ok ? nil : failure("cannot write", temporary)
        if close(descriptor) != 0 && ok {
            unlink(temporary)
            throw failure("cannot close", temporary)
        }
        if let error {
            unlink(temporary)
            throw error
        }
        return temporary
    }

    /// Renames `temporary` over `destination` (rename(2), atomic: readers see the whole old
    /// file, the whole new one, or none).
    static func publish(_ temporary: String, as destination: String) throws {
        guard rename(temporary, destination) == 0 else {
            let error = failure("cannot rename \(temporary) to", destination)
            unlink(temporary)
            throw error
        }
    }

    /// Removes a file; a missing file is not an error (the cache is removing it anyway).
    static func remove(_ path: String) {
        _ = unlink(path)
    }

    /// The identity of the file at `path` now, or nil when there is none.
    static func identity(of path: String) -> Identity? {
        var info = stat()
        return lstat(path, &info) == 0 ? Identity(info) : nil
    }

    static func makeDirectories(_ path: String) throws {
        var current = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            current += "/" + component
            if mkdir(current, 0o755) != 0 && errno != EEXIST {
                throw failure("cannot create directory", current)
            }
        }
    }

    struct Entry {
        var name: String
        var isDirectory: Bool
        var isRegularFile: Bool
        var size: Int
        var modified: timespec
    }

    /// The entries of a directory (not `.` and `..`), with lstat(2) information.
    static func entries(of directory: String) throws -> [Entry] {
        guard let handle = opendir(directory) else { throw failure("cannot list", directory) }
        defer { closedir(handle) }
        var entries: [Entry] = []
        while let entry = readdir(handle) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name == "." || name == ".." { continue }
            var info = stat()
            guard lstat(directory + "/" + name, &info) == 0 else { continue }  // gone meanwhile
            let type = info.st_mode & S_IFMT
            entries.append(Entry(name: name, isDirectory: type == S_IFDIR, isRegularFile: type == S_IFREG,
                                 size: Int(info.st_size), modified: info.st_mtim))
        }
        return entries
    }

    static func failure(_ what: String, _ path: String) -> CacheError {
        CacheError(.io, "\(what) \(path): \(String(cString: strerror(errno)))")
    }
}
