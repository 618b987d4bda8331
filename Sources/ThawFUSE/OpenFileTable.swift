import Synchronization

/// The files one mount has open, by the handle the kernel passes back with every read, and what
/// the kernel's page cache may hold for each name.
///
/// An open keeps the file it found, so reads go on after the name is removed or replaced. The
/// kernel caches pages per name (libfuse gives a name one inode while anyone holds it), so the
/// table decides per open whether cached pages may be kept: only when they came from the very
/// file being opened. While a handle on a replaced file is still open it may keep loading the old
/// bytes into the cache, so opens of the replacement bypass the cache until it is closed.
final class OpenFileTable: Sendable {
    struct OpenFile: Sendable {
        var name: String
        var entry: FUSEFileSystem.Entry
    }

    /// How the kernel should treat its page cache for a new open.
    struct Opened: Sendable {
        var handle: UInt64
        /// The cached pages are this file's: keep them (`keep_cache`).
        var keepCache: Bool
        /// Pages of another file may still arrive: read around the cache (`direct_io`).
        var bypassCache: Bool
    }

    private struct State {
        var open: [UInt64: OpenFile] = [:]
        var lastHandle: UInt64 = 0
        /// Per name, the generation whose bytes the page cache may hold.
        var cachedGeneration: [String: UInt64] = [:]
    }

    private let state = Mutex(State())

    /// Opens the file now served as `name`; nil when there is none. The catalog is consulted under
    /// the table's lock, so a replacement cannot slip between finding a file and recording it.
    func open(_ name: String, in fileSystem: FUSEFileSystem) -> Opened? {
        state.withLock { state -> Opened? in
            guard let entry = fileSystem.entry(named: name) else { return nil }
            state.lastHandle += 1
            let handle = state.lastHandle
            let olderStillOpen = state.open.values.contains {
                $0.name == name && $0.entry.generation != entry.generation
            }
            var opened = Opened(handle: handle, keepCache: false, bypassCache: olderStillOpen)
            if !olderStillOpen {
                opened.keepCache = state.cachedGeneration[name] == entry.generation
                state.cachedGeneration[name] = entry.generation
            }
            state.open[handle] = OpenFile(name: name, entry: entry)
            return opened
        }
    }

    func file(_ handle: UInt64) -> OpenFile? {
        state.withLock { $0.open[handle] }
    }

    func close(_ handle: UInt64) {
        _ = state.withLock { $0.open.removeValue(forKey: handle) }
    }
}
