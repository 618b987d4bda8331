public import ThawSeal
import Synchronization

/// The disk half of the L1 cache: one file per chunk in a directory, at most `capacity` bytes,
/// evicted by a policy, kept across restarts.
///
/// Layout: `DIRECTORY/ab/abcdef…` — the file is named by the chunk name in hexadecimal, in a
/// folder named by its first byte, as in the directory store, so no folder grows past a
/// 256th of the cache. Only two-hex-digit folders are ever written to or cleaned.
///
/// Consistency: a chunk is written to a temporary file beside its final name and renamed into
/// place, and only then indexed, so the index never names a partial file and a killed writer
/// leaves only a temporary file, which the next open removes. Renames and unlinks happen under
/// the index lock, so the index and the directory change together; writing and reading the
/// bytes happen outside it. A read holds its file open, so an eviction that unlinks the file
/// meanwhile does not tear it. Nothing is fsynced: after a power failure a file may be empty or
/// wrong, and the open scan or the read check removes it.
///
/// Every read is checked: bytes that do not hash to the chunk's name are deleted and reported
/// as a miss. The methods block on file I/O; `L1Cache` calls them off the concurrency pool.
public final class DiskTier: Sendable {
    public let directory: String
    public let capacity: Int
    /// No chunk file can be larger; a file that is, is corrupt.
    public let maximumChunkBytes: Int
    /// What the open scan found and removed.
    public let scanReport: DiskScanReport

    private let state: Mutex<State>

    private struct State: Sendable {
        var policy: ChunkPolicy
        var counters = TierStatistics()
        var corruptFilesDropped: UInt64 = 0
    }

    /// The largest chunk size `thaw push` accepts (64 MiB): the default bound on chunk files.
    public static let largestChunk = 64 << 20

    /// Opens the tier in `directory`, creating it if needed, and rebuilds the index from the
    /// files there (see `DiskScanReport`). Blocks while it scans.
    ///
    /// - Parameters:
    ///   - policy: how the tier chooses what to evict. After a restart the policy knows the
    ///     chunks in order of their files' modification times (oldest first), each as
    ///     referenced once.
    /// - Throws: `CacheError` when the directory cannot be created or listed, or a parameter is
    ///   out of range.
    public init(directory: String, capacity: Int, policy: EvictionPolicyChoice = .default,
                maximumChunkBytes: Int = DiskTier.largestChunk) throws {
        guard capacity >= 0, maximumChunkBytes > 0 else {
            throw CacheError(.invalidConfiguration,
                             "a disk tier needs a capacity >= 0 (not \(capacity)) and a chunk size limit > 0 (not \(maximumChunkBytes))")
        }
        var trimmed = directory
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed.removeLast() }
        self.directory = trimmed
        self.capacity = capacity
        self.maximumChunkBytes = maximumChunkBytes
        var state = State(policy: ChunkPolicy(policy))
        state.counters.capacity = capacity
        scanReport = try Self.scan(trimmed, capacity: capacity, maximumChunkBytes: maximumChunkBytes, into: &state.policy)
        self.state = Mutex(state)
    }

    /// The file that holds `name`.
    public func path(of name: ChunkName) -> String { Self.path(of: name, in: directory) }

    static func path(of name: ChunkName, in directory: String) -> String {
        let hex = name.hex
        return directory + "/" + hex.prefix(2) + "/" + hex
    }

    public func contains(_ name: ChunkName) -> Bool {
        state.withLock { $0.policy.contains(CacheKey(name)) }
    }

    /// Records a reference served by a faster tier, so the disk tier's policy sees the whole
    /// reference stream and keeps the chunks that are hot in memory too.
    ///
    /// - Returns: whether the chunk is here.
    @discardableResult
    public func recordAccess(_ name: ChunkName) -> Bool {
        let key = CacheKey(name)
        return state.withLock { state in
            state.policy.recordAccess(key)
            return state.policy.contains(key)
        }
    }

    /// The chunk's ciphertext, checked against its name; nil when it is not here or its file
    /// is corrupt (the file is then deleted and counted in `corruptFilesDropped`).
    public func read(_ name: ChunkName) -> [UInt8]? {
        let key = CacheKey(name)
        let indexed = state.withLock { state in
            let indexed = state.policy.contains(key)
            if !indexed { state.counters.misses += 1 }
            return indexed
        }
        guard indexed else { return nil }
        let path = path(of: name)
        let result: ChunkFiles.ReadResult
        do {
            result = try ChunkFiles.read(path, limit: maximumChunkBytes)
        } catch {
            dropCorrupt(name, path: path, identity: ChunkFiles.identity(of: path))
            return nil
        }
        switch result {
        case .bytes(let bytes, let identity):
            guard name.matches(bytes) else {
                dropCorrupt(name, path: path, identity: identity)
                return nil
            }
            state.withLock { state in
                state.counters.hits += 1
                state.counters.hitBytes += UInt64(bytes.count)
                state.policy.recordAccess(key)
            }
            return bytes
        case .oversized(let identity):
            dropCorrupt(name, path: path, identity: identity)
            return nil
        case .missing:
            // Evicted since the lookup, or deleted from outside: forget it unless a writer
            // has put it back meanwhile.
            state.withLock { state in
                state.counters.misses += 1
                if ChunkFiles.identity(of: path) == nil { state.policy.remove(key) }
            }
            return nil
        }
    }

    /// Stores `ciphertext`, which the caller has checked against `name`, evicting what the
    /// policy chooses until it fits. Returns once the file is in place under its name.
    ///
    /// - Returns: false when the chunk was already here (counted as a reference) or cannot fit
    ///   (empty, larger than the tier or than any chunk).
    /// - Throws: `CacheError` when the file cannot be written; the tier is unchanged.
    @discardableResult
    public func write(_ name: ChunkName, _ ciphertext: [UInt8]) throws -> Bool {
        let size = ciphertext.count
        guard size > 0, size <= min(capacity, maximumChunkBytes) else { return false }
        let key = CacheKey(name)
        let present = state.withLock { state in
            state.policy.recordAccess(key)
            return state.policy.contains(key)
        }
        if present { return false }
        let destination = path(of: name)
        let temporary = try ChunkFiles.writeTemporary(ciphertext, beside: destination)
        return try state.withLock { state in
            if state.policy.contains(key) {  // another writer finished first
                ChunkFiles.remove(temporary)
                return false
            }
            while state.policy.bytes + size > capacity, let victim = state.policy.evict() {
                ChunkFiles.remove(path(of: victim.key.name))
                state.counters.evictions += 1
            }
            try ChunkFiles.publish(temporary, as: destination)
            state.policy.insert(key, size: size)
            state.counters.insertions += 1
            return true
        }
    }

    public var statistics: TierStatistics {
        state.withLock { state in
            var snapshot = state.counters
            snapshot.bytes = state.policy.bytes
            snapshot.entries = state.policy.count
            return snapshot
        }
    }

    /// Files whose bytes did not match their name (or could not be read), deleted on read.
    public var corruptFilesDropped: UInt64 {
        state.withLock { $0.corruptFilesDropped }
    }

    /// Deletes a file found corrupt, unless a writer has replaced it since it was read.
    private func dropCorrupt(_ name: ChunkName, path: String, identity: ChunkFiles.Identity?) {
        state.withLock { state in
            state.counters.misses += 1
            state.corruptFilesDropped += 1
            let current = ChunkFiles.identity(of: path)
            if current == nil || current == identity {
                if current != nil { ChunkFiles.remove(path) }
                state.policy.remove(CacheKey(name))
            }
        }
    }
}
