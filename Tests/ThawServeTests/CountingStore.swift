import Synchronization
import ThawSeal
import ThawStore

/// Delegates to a real store, counting chunk reads per key and optionally delaying or hanging
/// them, so tests can see how many origin fetches the reader made and when.
final class CountingStore: ChunkStore {
    let base: any ChunkStore
    private struct State {
        var gets: [StoreKey: Int] = [:]
        var delay: Duration = .zero
        var delays: [StoreKey: Duration] = [:]
        var hang: Duration = .zero
        var failures = 0
    }
    private let state = Mutex(State())

    init(_ base: any ChunkStore) { self.base = base }

    var location: String { "counting(\(base.location))" }

    func gets(of name: ChunkName, root: RootID = .initial) -> Int {
        state.withLock { $0.gets[StoreLayout.chunk(name, root: root), default: 0] }
    }
    var totalGets: Int { state.withLock { $0.gets.values.reduce(0, +) } }
    func setDelay(_ delay: Duration) { state.withLock { $0.delay = delay } }
    /// Reads of this one chunk wait `delay` instead of the delay set for all.
    func setDelay(_ delay: Duration, of name: ChunkName, root: RootID = .initial) {
        state.withLock { $0.delays[StoreLayout.chunk(name, root: root)] = delay }
    }
    /// Chunk reads wait this long before answering (zero: no hang).
    func setHang(_ hang: Duration) { state.withLock { $0.hang = hang } }
    /// The next `count` reads fail with `StoreError.unavailable`.
    func failNext(_ count: Int) { state.withLock { $0.failures = count } }

    func get(_ key: StoreKey) async throws -> [UInt8] {
        let (delay, hang, fail) = state.withLock { s in
            s.gets[key, default: 0] += 1
            let fail = s.failures > 0
            if fail { s.failures -= 1 }
            return (s.delays[key] ?? s.delay, s.hang, fail)
        }
        if fail { throw StoreError(.unavailable, "injected failure reading \(key)") }
        if hang > .zero { try await Task.sleep(for: hang) }
        if delay > .zero { try await Task.sleep(for: delay) }
        return try await base.get(key)
    }

    func put(_ key: StoreKey, _ bytes: [UInt8]) async throws { try await base.put(key, bytes) }
    func exists(_ key: StoreKey) async throws -> Bool { try await base.exists(key) }
    func delete(_ key: StoreKey) async throws { try await base.delete(key) }
    func list(under prefix: String) -> AsyncThrowingStream<StoreKey, any Error> { base.list(under: prefix) }
}
