#if canImport(Glibc)
import Glibc
#endif
public import Logging
import Synchronization

/// A FUSE file system of read-only regular files in one flat directory; files can be added and
/// removed while mounted.
///
/// It is only the catalog: `FUSEMount` puts it in the kernel's tree, and one catalog may be
/// mounted at several directories. A file that is removed keeps serving those who opened it
/// before, as a removed file does on any POSIX file system; new opens no longer find it.
public final class FUSEFileSystem: Sendable {
    /// One served name. The generation tells a replaced file from the one it replaced, so a
    /// mount can drop the kernel's cached pages of the old bytes.
    struct Entry: Sendable {
        var file: any FUSEFile
        var generation: UInt64
        /// Seconds since the epoch when the name was added: the file's fixed modification time.
        var addedAt: Int
        /// Opens for writing succeed (writes themselves still fail): for a VMM that maps the file
        /// privately, as guest RAM, and opens it read-write to do so.
        var writableOpens = false
    }

    private struct State {
        var entries: [String: Entry] = [:]
        var lastGeneration: UInt64 = 0
    }

    private let state = Mutex(State())
    let logger: Logger
    /// Seconds since the epoch when the catalog was made: the directory's fixed modification time.
    let createdAt: Int

    /// The longest name the kernel will look up (NAME_MAX).
    static let longestName = 255

    /// An empty catalog; `logger` records files coming and going.
    public init(logger: Logger = Logger(label: "thaw.fuse")) {
        self.logger = logger
        self.createdAt = time(nil)
    }

    /// Serves `file` as `name`, replacing any file of that name (those who opened the old one keep
    /// reading it). With `writableOpens`, opens for writing succeed though every write fails:
    /// qemu opens a guest RAM file read-write even to map it privately (copy on write).
    ///
    /// - Throws: `FUSEError` of kind `.invalidName` when `name` is not a single path component.
    public func add(_ name: String, _ file: any FUSEFile, writableOpens: Bool = false) throws {
        try Self.validate(name)
        let replaced = state.withLock { state -> Bool in
            state.lastGeneration += 1
            let entry = Entry(file: file, generation: state.lastGeneration, addedAt: time(nil), writableOpens: writableOpens)
            return state.entries.updateValue(entry, forKey: name) != nil
        }
        logger.debug(replaced ? "replaced FUSE file" : "added FUSE file",
                     metadata: ["name": "\(name)", "size": "\(file.size)"])
    }

    /// Stops serving `name` to new opens; does nothing when there is no such file.
    public func remove(_ name: String) {
        let removed = state.withLock { $0.entries.removeValue(forKey: name) } != nil
        if removed { logger.debug("removed FUSE file", metadata: ["name": "\(name)"]) }
    }

    /// The names served, sorted.
    public var names: [String] {
        state.withLock { Array($0.entries.keys) }.sorted()
    }

    func entry(named name: String) -> Entry? {
        state.withLock { $0.entries[name] }
    }

    /// The names with their files, sorted by name, for listings and `statfs`.
    var entries: [(name: String, entry: Entry)] {
        state.withLock { $0.entries.map { (name: $0.key, entry: $0.value) } }.sorted { $0.name < $1.name }
    }

    /// A name must be exactly one entry of the mount's only directory, or the kernel could never
    /// look it up.
    static func validate(_ name: String) throws {
        let problem: String? =
            if name.isEmpty { "a file name cannot be empty" }
            else if name == "." || name == ".." { "a file name cannot be \".\" or \"..\"" }
            else if name.contains("/") { "a file name cannot contain \"/\"" }
            else if name.utf8.contains(0) { "a file name cannot contain NUL" }
            else if name.utf8.count > longestName { "a file name cannot be longer than \(longestName) bytes" }
            else { nil }
        if let problem { throw FUSEError(.invalidName, path: name, message: problem) }
    }
}
