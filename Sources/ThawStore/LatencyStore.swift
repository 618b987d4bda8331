public import ThawSeal

/// Another store with a fixed delay before every read, so a local directory behaves like a
/// remote object store (S3 first-byte latency is tens of milliseconds) in benchmarks of what
/// latency costs a start and what prefetch saves. A listing waits the delay before each page of
/// 1,000 keys, as an S3 LIST request returns them. Writes and deletions are not delayed.
public struct LatencyStore: ChunkStore {
    public let base: any ChunkStore
    public let delay: Duration

    public init(_ base: any ChunkStore, delay: Duration) {
        self.base = base
        self.delay = delay
    }

    public var location: String { base.location }

    public func get(_ key: StoreKey) async throws -> [UInt8] {
        try await Task.sleep(for: delay)
        return try await base.get(key)
    }

    public func exists(_ key: StoreKey) async throws -> Bool {
        try await Task.sleep(for: delay)
        return try await base.exists(key)
    }

    public func put(_ key: StoreKey, _ bytes: [UInt8]) async throws { try await base.put(key, bytes) }
    public func delete(_ key: StoreKey) async throws { try await base.delete(key) }
    /// Keys a listing request returns at most (S3's page of a LIST).
    static let listPage = 1000

    public func list(under prefix: String) -> AsyncThrowingStream<StoreKey, any Error> {
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: StoreKey.self)
        let listing = Task { [base, delay] in
            do {
                var listed = 0
                try await Task.sleep(for: delay)
                for try await key in base.list(under: prefix) {
                    if listed > 0 && listed % Self.listPage == 0 { try await Task.sleep(for: delay) }
                    continuation.yield(key)
                    listed += 1
                }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        continuation.onTermination = { _ in listing.cancel() }
        return stream
    }
    public func putChunk(_ name: ChunkName, _ ciphertext: [UInt8], root: RootID) async throws {
        try await base.putChunk(name, ciphertext, root: root)
    }
    public func sync() async throws { try await base.sync() }
    public func deleteAll(under prefix: String) async throws -> Int { try await base.deleteAll(under: prefix) }
}
