import Foundation
import Glibc
public import ThawSeal
import NIOPosix
import Synchronization
import SystemPackage

/// A store in a local directory (the embedded default): each key is a file at that relative path.
///
/// Writes go to a temporary file in the destination folder, which is fsynced and renamed over the
/// key, and the folder is then fsynced, so a crash leaves either the old object or the new one,
/// never a torn file. Chunks are the exception to the folder fsync: a push writes hundreds of
/// them into a few hundred fan-out folders, so their folders are fsynced once each by `sync()`,
/// before the manifest that refers to them is written. (A chunk file is fsynced before its rename
/// either way, so a chunk present under its name is always whole.) Concurrent writers of one chunk each write their own temporary file and the
/// last rename wins with identical bytes. Blocking file calls run on NIO's thread pool, not on
/// the concurrency pool.
public struct DirectoryStore: ChunkStore {
    public let root: String
    public var location: String { root }
    /// Marks temporary files, which `list` skips.
    static let temporaryMarker = ".tmp-"
    /// Folders holding chunks renamed into place since the last `sync()`.
    private let unsyncedFolders = UnsyncedFolders()

    /// Opens the store at `path`, creating the directory when `create` is set.
    public init(path: String, create: Bool) throws {
        var trimmed = path
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed.removeLast() }
        root = trimmed
        var info = stat()
        if stat(root, &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFDIR else {
                throw StoreError(.invalidLocation, "store \(root) is not a directory")
            }
        } else if create {
            try Self.makeDirectories(root)
        } else {
            throw StoreError(.notFound, "there is no store at \(root)")
        }
    }

    func path(_ key: StoreKey) -> String { root + "/" + key.path }

    public func put(_ key: StoreKey, _ bytes: [UInt8]) async throws {
        let destination = path(key)
        _ = try await NIOThreadPool.singleton.runIfActive {
            try Self.writeAtomically(bytes, to: destination)
        }
    }

    public func putChunk(_ name: ChunkName, _ ciphertext: [UInt8], root: RootID) async throws {
        let destination = path(StoreLayout.chunk(name, root: root))
        let folder = try await NIOThreadPool.singleton.runIfActive {
            try Self.writeAtomically(ciphertext, to: destination, syncFolder: false)
        }
        unsyncedFolders.insert(folder)
    }

    public func sync() async throws {
        let folders = unsyncedFolders.takeAll()
        guard !folders.isEmpty else { return }
        do {
            try await NIOThreadPool.singleton.runIfActive {
                for folder in folders { try Self.syncDirectory(folder) }
            }
        } catch {
            folders.forEach(unsyncedFolders.insert)  // a later sync tries again
            throw error
        }
    }

    public func get(_ key: StoreKey) async throws -> [UInt8] {
        let source = path(key)
        let location = location
        return try await NIOThreadPool.singleton.runIfActive {
            try Self.readFile(source, key: key, store: location)
        }
    }

    public func exists(_ key: StoreKey) async throws -> Bool {
        let target = path(key)
        return try await NIOThreadPool.singleton.runIfActive {
            var info = stat()
            if stat(target, &info) == 0 { return true }
            if errno == ENOENT || errno == ENOTDIR { return false }
            throw StoreError(.io, "cannot stat \(target): \(String(cString: strerror(errno)))")
        }
    }

    public func delete(_ key: StoreKey) async throws {
        let target = path(key)
        try await NIOThreadPool.singleton.runIfActive {
            if unlink(target) != 0 && errno != ENOENT {
                throw StoreError(.io, "cannot delete \(target): \(String(cString: strerror(errno)))")
            }
        }
    }

    /// Renames the prefix's folder out of the way in one step, so no reader sees half of it,
    /// then removes it; a removal cut short by a crash is finished by the next call.
    @discardableResult
    public func deleteAll(under prefix: String) async throws -> Int {
        let folder = root + "/" + (try StoreKey(prefix)).path
        let root = self.root
        return try await NIOThreadPool.singleton.runIfActive {
            let leftovers = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
            for name in leftovers where name.hasPrefix(".deleting-") {
                try? FileManager.default.removeItem(atPath: root + "/" + name)
            }
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory) else { return 0 }
            guard isDirectory.boolValue else { throw StoreError(.io, "cannot delete \(folder): it is not a folder") }
            var count = 0
            try Self.walk(folder) { _ in count += 1 }
            var random = SystemRandomNumberGenerator()
            let tombstone = root + "/.deleting-" + String(random.next() as UInt64, radix: 36)
            guard rename(folder, tombstone) == 0 else {
                throw StoreError(.io, "cannot delete \(folder): \(String(cString: strerror(errno)))")
            }
            do {
                try FileManager.default.removeItem(atPath: tombstone)
            } catch {
                throw StoreError(.io, "cannot remove \(folder) (moved to \(tombstone)): \(error)")
            }
            return count
        }
    }

    public func list(under prefix: String) -> AsyncThrowingStream<StoreKey, any Error> {
        let start = prefix.isEmpty ? root : root + "/" + prefix
        let rootLength = root.utf8.count + 1
        return AsyncThrowingStream { continuation in
            let task = Task {
                do {
                    try await NIOThreadPool.singleton.runIfActive {
                        try Self.walk(start) { file in
                            let relative = String(decoding: file.utf8.dropFirst(rootLength), as: UTF8.self)
                            if let key = try? StoreKey(relative) { continuation.yield(key) }
                        }
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    // MARK: Blocking file operations

    /// Writes through a temporary file, fsynced and renamed; returns the folder, which is
    /// fsynced too unless `syncFolder` is false.
    @discardableResult
    static func writeAtomically(_ bytes: [UInt8], to destination: String, syncFolder: Bool = true) throws -> String {
        let folder = String(destination[..<destination.lastIndex(of: "/")!])
        var suffix = SystemRandomNumberGenerator()
        let temporary = destination + temporaryMarker + String(suffix.next() as UInt64, radix: 36)
        let descriptor: FileDescriptor
        do {
            descriptor = try FileDescriptor.open(FilePath(temporary), .writeOnly, options: [.create, .exclusiveCreate, .closeOnExec],
                                                 permissions: [.ownerReadWrite, .groupRead, .otherRead])
        } catch Errno.noSuchFileOrDirectory {
            try makeDirectories(folder)
            return try writeAtomically(bytes, to: destination, syncFolder: syncFolder)
        } catch {
            throw StoreError(.io, "cannot create \(temporary): \(error)")
        }
        do {
            try descriptor.closeAfter {
                _ = try descriptor.writeAll(bytes)
                guard fsync(descriptor.rawValue) == 0 else { throw Errno(rawValue: errno) }
            }
            guard rename(temporary, destination) == 0 else { throw Errno(rawValue: errno) }
        } catch {
            unlink(temporary)
            throw StoreError(.io, "cannot write \(destination): \(error)")
        }
        if syncFolder { try syncDirectory(folder) }
        return folder
    }

    static func syncDirectory(_ folder: String) throws {
        let fd = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw StoreError(.io, "cannot open \(folder): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw StoreError(.io, "cannot sync \(folder): \(String(cString: strerror(errno)))") }
    }

    static func readFile(_ source: String, key: StoreKey, store: String) throws -> [UInt8] {
        let descriptor: FileDescriptor
        do {
            descriptor = try FileDescriptor.open(FilePath(source), .readOnly, options: [.closeOnExec])
        } catch Errno.noSuchFileOrDirectory, Errno.notDirectory {
            throw StoreError(.notFound, "\(key) is not in \(store)")
        } catch {
            throw StoreError(.io, "cannot open \(source): \(error)")
        }
        return try descriptor.closeAfter {
            do {
                let size = Int(try descriptor.seek(offset: 0, from: .end))
                var bytes = [UInt8](repeating: 0, count: size)
                var filled = 0
                while filled < size {
                    let n = try bytes.withUnsafeMutableBytes {
                        try descriptor.read(fromAbsoluteOffset: Int64(filled), into: UnsafeMutableRawBufferPointer(rebasing: $0[filled...]))
                    }
                    guard n > 0 else { break }
                    filled += n
                }
                return Array(bytes[0..<filled])
            } catch {
                throw StoreError(.io, "cannot read \(source): \(error)")
            }
        }
    }

    static func makeDirectories(_ path: String) throws {
        var current = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            current += "/" + component
            if mkdir(current, 0o755) != 0 && errno != EEXIST {
                throw StoreError(.io, "cannot create directory \(current): \(String(cString: strerror(errno)))")
            }
        }
    }

    /// Calls `visit` with the path of every regular file under `start` (depth first), skipping
    /// temporary files. A missing start is an empty listing.
    static func walk(_ start: String, _ visit: (String) throws -> Void) throws {
        guard let directory = opendir(start) else {
            if errno == ENOENT || errno == ENOTDIR { return }
            throw StoreError(.io, "cannot list \(start): \(String(cString: strerror(errno)))")
        }
        defer { closedir(directory) }
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name == "." || name == ".." || name.contains(temporaryMarker) { continue }
            let child = start + "/" + name
            switch Int32(entry.pointee.d_type) {
            case Int32(DT_DIR): try walk(child, visit)
            case Int32(DT_REG): try visit(child)
            default:
                var info = stat()
                if lstat(child, &info) == 0 {
                    if info.st_mode & S_IFMT == S_IFDIR { try walk(child, visit) } else if info.st_mode & S_IFMT == S_IFREG { try visit(child) }
                }
            }
        }
    }
}

/// The set of folders a `DirectoryStore` still has to fsync, shared by its copies.
final class UnsyncedFolders: Sendable {
    private let folders = Mutex<Set<String>>([])

    func insert(_ folder: String) { folders.withLock { _ = $0.insert(folder) } }

    func takeAll() -> Set<String> {
        folders.withLock { set in
            defer { set.removeAll() }
            return set
        }
    }
}
