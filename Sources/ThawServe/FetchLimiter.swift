import Synchronization

/// Bounds concurrent origin fetches. Demand reads are woken before read-ahead, and read-ahead
/// may hold only part of the permits, so a read never queues behind a burst of prefetches. A
/// queued read-ahead fetch that a reader comes to wait for is promoted to a demand fetch.
final class FetchLimiter: Sendable {
    private struct State {
        var inUse = 0
        var readAheadInUse = 0
        var demandWaiters: [CheckedContinuation<Bool, Never>] = []
        var readAheadWaiters: [(chunk: Int, continuation: CheckedContinuation<Bool, Never>)] = []
    }

    private let limit: Int
    private let readAheadLimit: Int
    private let state = Mutex(State())

    init(limit: Int, readAheadLimit: Int) {
        self.limit = limit
        self.readAheadLimit = min(limit, readAheadLimit)
    }

    /// Waits for a permit to fetch `chunk`. Returns whether the permit is a demand permit (a
    /// read-ahead fetch promoted while queued gets one); pass that back to `release`.
    func acquire(demand: Bool, chunk: Int) async -> Bool {
        await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let granted = state.withLock { s -> Bool in
                if demand {
                    if s.inUse < limit {
                        s.inUse += 1
                        return true
                    }
                    s.demandWaiters.append(continuation)
                } else {
                    if s.inUse < limit, s.readAheadInUse < readAheadLimit, s.demandWaiters.isEmpty {
                        s.inUse += 1
                        s.readAheadInUse += 1
                        return true
                    }
                    s.readAheadWaiters.append((chunk, continuation))
                }
                return false
            }
            if granted { continuation.resume(returning: demand) }
        }
    }

    /// Moves a queued read-ahead fetch of `chunk` to the demand queue, granting it a permit at
    /// once if one is free. Does nothing when that fetch is not queued.
    func promote(chunk: Int) {
        let grant = state.withLock { s -> CheckedContinuation<Bool, Never>? in
            guard let position = s.readAheadWaiters.firstIndex(where: { $0.chunk == chunk }) else { return nil }
            let continuation = s.readAheadWaiters.remove(at: position).continuation
            if s.inUse < limit {
                s.inUse += 1
                return continuation
            }
            s.demandWaiters.append(continuation)
            return nil
        }
        grant?.resume(returning: true)
    }

    func release(demand: Bool) {
        let next = state.withLock { s -> (CheckedContinuation<Bool, Never>, Bool)? in
            s.inUse -= 1
            if !demand { s.readAheadInUse -= 1 }
            if !s.demandWaiters.isEmpty {
                s.inUse += 1
                return (s.demandWaiters.removeFirst(), true)
            }
            if !s.readAheadWaiters.isEmpty, s.readAheadInUse < readAheadLimit {
                s.inUse += 1
                s.readAheadInUse += 1
                return (s.readAheadWaiters.removeFirst().continuation, false)
            }
            return nil
        }
        if let (continuation, demand) = next { continuation.resume(returning: demand) }
    }
}
