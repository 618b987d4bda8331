import Foundation
import ThawFUSE
import ThawTestSupport

/// Helpers for tests that mount a real FUSE file system.
///
/// Touching a file on the mount blocks the calling thread until the mount's async `read` has
/// run on Swift's cooperative pool; so every such call goes to a thread of its own, or parallel
/// tests blocking the pool's few threads would leave none to serve them. The helpers are async
/// and return what they saw, so expectations stay in the test's task, where they are recorded
/// against the test.
enum MountHarness {
    /// Mounts `fileSystem` at `directory` for `body`, and unmounts afterwards whatever happens.
    static func withMount<T>(_ fileSystem: FUSEFileSystem, at directory: String,
                             _ body: (FUSEMount) async throws -> T) async throws -> T {
        let mount = try await FUSEMount.mount(fileSystem, at: directory)
        do {
            let result = try await body(mount)
            await mount.unmount()
            return result
        } catch {
            await mount.unmount()
            throw error
        }
    }

    /// A new empty directory `name` in `parent`, with symbolic links resolved as the mount table
    /// shows it.
    static func makeDirectory(_ name: String, in parent: String) throws -> String {
        let path = parent + "/" + name
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return URL(fileURLWithPath: path).resolvingSymlinksInPath().path
    }

    /// The type of the topmost mount at `path` in `/proc/self/mountinfo`; nil when none.
    static func mountedType(at path: String) throws -> String? {
        let table = try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)
        var found: String?
        for line in table.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count > 4, fields[4] == path, let dash = fields.firstIndex(of: "-") else { continue }
            found = String(fields[dash + 1])
        }
        return found
    }

    static func listing(_ directory: String) async throws -> [String] {
        try await TestSupport.onOwnThread { try FileManager.default.contentsOfDirectory(atPath: directory).sorted() }
    }

    /// The whole file, read as `FileManager` reads (size from `fstat`, then to the end).
    static func contents(_ path: String) async throws -> [UInt8]? {
        try await TestSupport.onOwnThread { FileManager.default.contents(atPath: path).map { [UInt8]($0) } }
    }

    static func attributes(_ path: String) async throws -> (size: Int?, type: FileAttributeType?, permissions: Int?) {
        try await TestSupport.onOwnThread {
            let attributes = try FileManager.default.attributesOfItem(atPath: path)
            return (attributes[.size] as? Int, attributes[.type] as? FileAttributeType, attributes[.posixPermissions] as? Int)
        }
    }

    /// Runs a command (which may read the mount) and returns its exit status.
    static func status(of tool: String, _ arguments: [String]) async throws -> Int32 {
        try await TestSupport.onOwnThread { try TestSupport.run(tool, arguments, check: false).status }
    }

    /// `length` bytes at `offset` of `path` with one `pread`, or the errno it failed with.
    static func pread(_ path: String, offset: Int, length: Int) async throws -> Result<[UInt8], POSIXError> {
        try await TestSupport.onOwnThread {
            let descriptor = open(path, O_RDONLY)
            guard descriptor >= 0 else { return .failure(POSIXError(POSIXErrorCode(rawValue: errno)!)) }
            defer { close(descriptor) }
            return blockingRead(descriptor, offset: offset, length: length)
        }
    }

    static func pread(descriptor: Int32, offset: Int, length: Int) async throws -> Result<[UInt8], POSIXError> {
        try await TestSupport.onOwnThread { blockingRead(descriptor, offset: offset, length: length) }
    }

    private static func blockingRead(_ descriptor: Int32, offset: Int, length: Int) -> Result<[UInt8], POSIXError> {
        var buffer = [UInt8](repeating: 0, count: length)
        let count = buffer.withUnsafeMutableBytes { Foundation.pread(descriptor, $0.baseAddress, length, off_t(offset)) }
        guard count >= 0 else { return .failure(POSIXError(POSIXErrorCode(rawValue: errno)!)) }
        return .success(Array(buffer.prefix(count)))
    }

    /// An open descriptor of `path` for reading; the caller closes it.
    static func openForReading(_ path: String) async throws -> Int32 {
        try await TestSupport.onOwnThread {
            let descriptor = open(path, O_RDONLY)
            guard descriptor >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno)!) }
            return descriptor
        }
    }

    /// The errno of opening `path` with `flags`; nil when it opened.
    static func openError(_ path: String, flags: Int32) async throws -> POSIXErrorCode? {
        try await TestSupport.onOwnThread {
            let descriptor = open(path, flags, 0o644)
            guard descriptor >= 0 else { return POSIXErrorCode(rawValue: errno) }
            close(descriptor)
            return nil
        }
    }
}
