import ThawCache
import ThawSeal
import ThawStore

extension LazyImage {
    /// The verified ciphertext of stored chunk `index`: from L1 (or the holding area), else from
    /// the origin through the single-flight table, bounded by the deadline.
    func ciphertext(of index: Int, _ ref: ChunkRef) async throws -> [UInt8] {
        if let cache {
            if let hit = await cache.get(ref.name), hit.count == Int(chunkSize) {
                counters.withLock { $0.chunksFromL1 += 1 }
                return hit
            }
        } else if let held = state.withLock({ $0.held[index] }) {
            counters.withLock { $0.chunksFromMemory += 1 }
            return held
        }
        let waiter = state.withLock { s in
            s.nextWaiter += 1
            return s.nextWaiter
        }
        let bytes = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<[UInt8], any Error>) in
                let deadline = configuration.deadline
                let expiry = ChunkDeadlineError(chunkIndex: index, chunk: ref.name, store: store.location, deadline: deadline)
                let startFetch = state.withLock { s -> Bool in
                    let start = s.flights[index] == nil
                    let timer = Task { [self] in
                        do { try await Task.sleep(for: deadline) } catch { return }
                        if abandon(index, waiter: waiter, with: expiry) {
                            counters.withLock { $0.deadlineExpiries += 1 }
                        }
                    }
                    s.flights[index, default: [:]][waiter] = FlightWaiter(continuation: continuation, timer: timer)
                    return start
                }
                if startFetch {
                    Task { await fetch(index, ref, demand: true) }
                } else {
                    counters.withLock { $0.singleFlightJoins += 1 }
                    limiter.promote(chunk: index)
                }
            }
        } onCancel: {
            _ = abandon(index, waiter: waiter, with: CancellationError())
        }
        counters.withLock { $0.chunksFromOrigin += 1 }
        return bytes
    }

    /// Removes one reader from a flight and fails it; false when the fetch already answered it.
    func abandon(_ index: Int, waiter: Int, with error: any Error) -> Bool {
        let removed = state.withLock { $0.flights[index]?.removeValue(forKey: waiter) }
        guard let removed else { return false }
        removed.timer?.cancel()
        removed.continuation.resume(throwing: error)
        return true
    }

    /// One origin fetch of chunk `index`, whose flight entry the caller created. The chunk goes
    /// into L1 (or the holding area) before the entry is removed, so a reader arriving in between
    /// joins the flight and a reader arriving after finds it cached.
    func fetch(_ index: Int, _ ref: ChunkRef, demand: Bool) async {
        let permit = await limiter.acquire(demand: demand, chunk: index)
        counters.withLock {
            $0.originFetches += 1
            if !demand { $0.readAheadFetches += 1 }
        }
        let result: Result<[UInt8], any Error>
        do {
            let bytes = try await store.getChunk(ref.name, root: manifest.header.root)
            guard bytes.count == Int(chunkSize) else {
                throw ChunkFetchError(chunkIndex: index, chunk: ref.name, store: store.location, kind: nil,
                                      reason: "it is \(bytes.count) bytes, not the chunk size \(chunkSize)")
            }
            if let cache {
                await cache.put(ref.name, bytes)
            } else {
                let capacity = configuration.holdingCapacity
                state.withLock { $0.hold(index, bytes, capacity: capacity) }
            }
            result = .success(bytes)
        } catch let error as ChunkFetchError {
            result = .failure(error)
        } catch {
            result = .failure(ChunkFetchError(chunkIndex: index, chunk: ref.name, store: store.location,
                                              kind: (error as? StoreError)?.kind, reason: "\(error)"))
        }
        limiter.release(demand: permit)
        if case .failure = result { counters.withLock { $0.fetchErrors += 1 } }
        let waiters = state.withLock { $0.flights.removeValue(forKey: index) } ?? [:]
        for waiter in waiters.values {
            waiter.timer?.cancel()
            waiter.continuation.resume(with: result)
        }
    }

    /// Starts read-ahead when a read continues a sequential stream: it ends in the chunk the
    /// previous read ended in, or the next one. Each chunk is prefetched once per stream.
    func noteRead(endingIn last: Int) {
        let readAhead = configuration.readAhead
        let range = state.withLock { s -> ClosedRange<Int>? in
            defer { s.lastReadEnd = last }
            guard let previous = s.lastReadEnd, previous == last || previous == last - 1, readAhead > 0 else {
                s.readAheadThrough = last
                return nil
            }
            let from = max(last + 1, s.readAheadThrough + 1)
            let through = min(last + readAhead, manifest.chunks.count - 1)
            guard from <= through else { return nil }
            s.readAheadThrough = through
            return from...through
        }
        guard let range else { return }
        for index in range {
            guard let ref = manifest.chunks[index] else { continue }
            Task { await prefetch(index, ref) }
        }
    }

    /// Fetches a chunk ahead of its reader unless it is cached, held or already in flight.
    func prefetch(_ index: Int, _ ref: ChunkRef) async {
        if let cache, await cache.get(ref.name) != nil { return }
        let start = state.withLock { s -> Bool in
            guard s.flights[index] == nil, s.held[index] == nil else { return false }
            s.flights[index] = [:]
            return true
        }
        if start { await fetch(index, ref, demand: false) }
    }
}
