import NIOPosix
public import ThawSeal
import Synchronization

/// A worker's L1 chunk cache: a memory tier in front of a disk tier, shared by every image the
/// worker serves, holding only ciphertext that was checked against its name.
///
/// A class with a lock per tier rather than an actor: a memory hit, the common case on the
/// block-device read path, takes one short lock and never suspends or hops executors. Disk
/// reads and writes run on NIO's blocking-I/O thread pool, not on the concurrency pool.
///
/// Ordering, for one chunk:
/// - `put` stores in memory first, then on disk, and returns when the file is in place (or
///   the write failed). A `get` that starts after `put` returns finds the chunk, unless it has
///   been evicted since; a `get` that overlaps `put` may find it in memory already.
/// - A chunk is on disk under its name only once all its bytes are; a restart after `put`
///   returned finds it there, unless it was evicted (files are not fsynced, so a power
///   failure may lose it; the check on every disk read catches what comes back wrong).
/// - Memory hits are also reported to the disk tier's policy, so the disk keeps what is hot
///   in memory, and still holds it when memory gives it up or the worker restarts.
public final class L1Cache: Sendable {
    public let configuration: L1Configuration
    private let memory: Mutex<MemoryTier>
    private let disk: DiskTier?
    private let diskWriteFailures = Atomic<UInt64>(0)

    /// Opens the cache; with a disk directory, scans it to rebuild the disk index (blocking).
    ///
    /// - Throws: `CacheError` when a capacity or a policy parameter is out of range, or the
    ///   directory cannot be used.
    public init(_ configuration: L1Configuration) throws {
        guard configuration.memoryCapacity >= 0, configuration.diskCapacity >= 0, configuration.maximumChunkBytes > 0 else {
            throw CacheError(.invalidConfiguration,
                             "cache capacities must be >= 0 and the largest chunk > 0 (memory \(configuration.memoryCapacity), disk \(configuration.diskCapacity), chunk \(configuration.maximumChunkBytes))")
        }
        if case .lruK(let parameters) = configuration.policy, parameters.k < 1 || parameters.retainedLimit < 0 {
            throw CacheError(.invalidConfiguration, "LRU-K needs K >= 1 and a retained limit >= 0 (K \(parameters.k), limit \(parameters.retainedLimit))")
        }
        self.configuration = configuration
        memory = Mutex(MemoryTier(capacity: configuration.memoryCapacity, policy: configuration.policy))
        if let directory = configuration.diskDirectory {
            disk = try DiskTier(directory: directory, capacity: configuration.diskCapacity, policy: configuration.policy,
                                maximumChunkBytes: configuration.maximumChunkBytes)
        } else {
            disk = nil
        }
    }

    /// Opens the cache with the disk scan on the blocking-I/O thread pool.
    public static func open(_ configuration: L1Configuration) async throws -> L1Cache {
        try await NIOThreadPool.singleton.runIfActive { try L1Cache(configuration) }
    }

    /// The chunk's verified ciphertext from memory, else from disk (checked against its name
    /// and then kept in memory too), else nil.
    public func get(_ name: ChunkName) async -> [UInt8]? {
        await lookup(name)?.bytes
    }

    /// Like `get`, and says which tier answered, for per-tier latency and hit figures.
    public func lookup(_ name: ChunkName) async -> (bytes: [UInt8], tier: L1Tier)? {
        if let bytes = memory.withLock({ $0.get(name) }) {
            disk?.recordAccess(name)
            return (bytes, .memory)
        }
        guard let disk else { return nil }
        guard let bytes = try? await NIOThreadPool.singleton.runIfActive({ disk.read(name) }) else { return nil }
        memory.withLock { _ = $0.put(name, bytes) }
        return (bytes, .disk)
    }

    /// The chunk from the memory tier alone, counted as a hit there; nil when it is not in
    /// memory. For a caller that must not wait for the disk.
    public func lookupInMemory(_ name: ChunkName) -> [UInt8]? {
        guard let bytes = memory.withLock({ $0.get(name) }) else { return nil }
        disk?.recordAccess(name)
        return bytes
    }

    /// Whether the memory tier holds the chunk, without counting an access.
    public func isInMemory(_ name: ChunkName) -> Bool {
        memory.withLock { $0.contains(name) }
    }

    /// Whether either tier holds the chunk, without counting an access: read-ahead and prefetch
    /// ask this before fetching, and must not make a chunk look hot to LRU-K.
    public func contains(_ name: ChunkName) -> Bool {
        memory.withLock { $0.contains(name) } || (disk?.contains(name) ?? false)
    }

    /// Stores `ciphertext`, which the caller has checked against `name` (the cache trusts
    /// it, and checks it again only when it comes back from disk). Returns once it is in
    /// memory and on disk; a failed disk write is counted in `diskWriteFailures`, not thrown:
    /// it costs a later miss, not a failed read.
    public func put(_ name: ChunkName, _ ciphertext: [UInt8]) async {
        putInMemory(name, ciphertext)
        await putOnDisk(name, ciphertext)
    }

    /// The first half of `put`: the chunk is in memory when this returns, so a reader waiting
    /// for it need not wait for the disk write as well.
    public func putInMemory(_ name: ChunkName, _ ciphertext: [UInt8]) {
        assert(name.matches(ciphertext), "only verified ciphertext may enter the cache")
        memory.withLock { _ = $0.put(name, ciphertext) }
    }

    /// The second half of `put`: writes the chunk to the disk tier unless it is there already.
    public func putOnDisk(_ name: ChunkName, _ ciphertext: [UInt8]) async {
        guard let disk, !disk.recordAccess(name) else { return }
        do {
            _ = try await NIOThreadPool.singleton.runIfActive { try disk.write(name, ciphertext) }
        } catch {
            diskWriteFailures.add(1, ordering: .relaxed)
        }
    }

    public var statistics: L1Statistics {
        L1Statistics(memory: memory.withLock { $0.statistics }, disk: disk?.statistics,
                     corruptFilesDropped: disk?.corruptFilesDropped ?? 0,
                     diskWriteFailures: diskWriteFailures.load(ordering: .relaxed), diskScan: disk?.scanReport)
    }
}
