import ThawCache
import ThawL2
import ThawMedes
public import ThawSeal
import ThawStore

extension LazyImage {
    /// Counts a read of chunk `index` that the prefetch or the record planned.
    func noteFirstUse(of index: Int) {
        let (wasPrefetched, firstRecordedRead) = state.withLock { ($0.prefetched.remove(index) != nil, $0.recordedUnread.remove(index) != nil) }
        if firstRecordedRead { counters.withLock { $0.recordedChunksRead += 1 } }
        if wasPrefetched {
            counters.withLock { $0.prefetchHits += 1 }
            metrics.prefetchHits.increment()
        }
    }

    /// The ciphertext of chunk `index` when it is in memory (L1's memory tier, or the holding
    /// area without L1), counted as a hit there; nil otherwise, with nothing counted.
    func ciphertextInMemory(of index: Int, _ ref: ChunkRef) -> [UInt8]? {
        if let cache {
            guard let bytes = cache.lookupInMemory(ref.name), bytes.count == Int(chunkSize) else { return nil }
            counters.withLock { $0.chunksFromL1 += 1 }
            return bytes
        }
        guard let held = state.withLock({ $0.held[index] }) else { return nil }
        counters.withLock { $0.chunksFromMemory += 1 }
        return held
    }

    /// Whether chunk `index` can be served without waiting: a zero chunk, or one in memory.
    /// Counts nothing.
    func isInMemory(_ index: Int) -> Bool {
        guard let ref = manifest.chunks[index] else { return true }
        if let cache { return cache.isInMemory(ref.name) }
        return state.withLock { $0.held[index] != nil }
    }

    /// The verified ciphertext of stored chunk `index` and the tier that gave it: L1 (or the
    /// holding area), else L2 or the origin through the single-flight table, bounded by the deadline.
    func ciphertext(of index: Int, _ ref: ChunkRef) async throws -> ([UInt8], ServeTier) {
        noteFirstUse(of: index)
        if let bytes = ciphertextInMemory(of: index, ref) { return (bytes, .memory) }
        if let cache {
            if let hit = await cache.lookup(ref.name), hit.bytes.count == Int(chunkSize) {
                counters.withLock {
                    $0.chunksFromL1 += 1
                    if hit.tier != .memory { $0.chunksFromDisk += 1 }
                }
                return (hit.bytes, hit.tier == .memory ? .memory : .disk)
            }
        } else if let held = state.withLock({ $0.held[index] }) {
            counters.withLock { $0.chunksFromMemory += 1 }
            return (held, .memory)
        }
        let waiter = state.withLock { s in
            s.nextWaiter += 1
            return s.nextWaiter
        }
        let fetched = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<FetchedChunk, any Error>) in
                let deadline = configuration.deadline
                let expiry = ChunkDeadlineError(chunkIndex: index, chunk: ref.name, store: store.location, deadline: deadline)
                let startFetch = state.withLock { s -> Bool in
                    let start = s.flights[index] == nil
                    let timer = Task { [self] in
                        do { try await Task.sleep(for: deadline) } catch { return }
                        if abandon(index, waiter: waiter, with: expiry) {
                            counters.withLock { $0.deadlineExpiries += 1 }
                            metrics.deadlineExpiries.increment()
                        }
                    }
                    s.flights[index, default: [:]][waiter] = FlightWaiter(continuation: continuation, timer: timer)
                    return start
                }
                if startFetch {
                    Task { await fetch(index, ref, kind: .demand) }
                } else {
                    counters.withLock { $0.singleFlightJoins += 1 }
                    limiter.promote(chunk: index)
                }
            }
        } onCancel: {
            _ = abandon(index, waiter: waiter, with: CancellationError())
        }
        counters.withLock {
            switch fetched.tier {
            case .l2: $0.chunksFromL2 += 1
            case .origin: $0.chunksFromOrigin += 1
            case .memory, .disk, .zero: $0.chunksFromL1 += 1
            }
        }
        return (fetched.bytes, fetched.tier)
    }

    /// Removes one reader from a flight and fails it; false when the fetch already answered it.
    func abandon(_ index: Int, waiter: Int, with error: any Error) -> Bool {
        let removed = state.withLock { $0.flights[index]?.removeValue(forKey: waiter) }
        guard let removed else { return false }
        removed.timer?.cancel()
        removed.continuation.resume(throwing: error)
        return true
    }

    /// One fetch of chunk `index`, whose flight entry the caller created: from L2 when it holds
    /// the chunk, else from the origin, whose answer is then written back to L2 without the
    /// readers waiting for it. The chunk goes into L1's memory (or the holding area) before the
    /// entry is removed, so a reader arriving in between joins the flight and a reader arriving
    /// after finds it cached; the disk tier's copy is written after the readers are answered.
    func fetch(_ index: Int, _ ref: ChunkRef, kind: OriginFetchKind) async {
        // A reader (or read-ahead) that missed L1 just before another fetch of this chunk
        // finished starts a flight of its own; the chunk is in memory by now, so no second
        // origin fetch.
        if let bytes = cache?.lookupInMemory(ref.name) ?? state.withLock({ $0.held[index] }) {
            if kind == .prefetch { _ = state.withLock { $0.prefetched.remove(index) } }
            finishFlight(index, with: .success(FetchedChunk(bytes: bytes, tier: .memory)))
            return
        }
        if state.withLock({ $0.record.map { !$0.contains(index) } ?? false }) {
            counters.withLock { $0.fetchesOutsideRecord += 1 }
        }
        if let l2, let bytes = await lookUp(ref, in: l2) {
            keep(index, ref, bytes)
            finishFlight(index, with: .success(FetchedChunk(bytes: bytes, tier: .l2)))
            if let cache { await cache.putOnDisk(ref.name, bytes) }
            return
        }
        let permit = await limiter.acquire(demand: kind == .demand, chunk: index)
        counters.withLock {
            $0.originFetches += 1
            switch kind {
            case .demand: break
            case .readAhead: $0.readAheadFetches += 1
            case .prefetch: $0.prefetchFetches += 1
            }
        }
        metrics.originFetches[kind]?.increment()
        metrics.originFetchesInFlight.increment()
        let result: Result<FetchedChunk, any Error>
        do {
            let bytes: [UInt8]
            if let patches, let delta = patches.table.deltas[index] {
                bytes = try await rebuild(index, ref, from: delta, patches: patches)
            } else {
                bytes = try await store.getChunk(ref.name, root: manifest.header.root)
                counters.withLock { $0.bytesFromOrigin += UInt64(bytes.count) }
            }
            guard bytes.count == Int(chunkSize) else {
                throw ChunkFetchError(chunkIndex: index, chunk: ref.name, store: store.location, kind: nil,
                                      reason: "it is \(bytes.count) bytes, not the chunk size \(chunkSize)")
            }
            keep(index, ref, bytes)
            result = .success(FetchedChunk(bytes: bytes, tier: .origin))
        } catch let error as ChunkFetchError {
            result = .failure(error)
        } catch {
            result = .failure(ChunkFetchError(chunkIndex: index, chunk: ref.name, store: store.location,
                                              kind: (error as? StoreError)?.kind, reason: "\(error)"))
        }
        metrics.originFetchesInFlight.decrement()
        limiter.release(demand: permit)
        if case .failure = result {
            counters.withLock { $0.fetchErrors += 1 }
            metrics.fetchErrors.increment()
            if kind == .prefetch { _ = state.withLock { $0.prefetched.remove(index) } }
        }
        finishFlight(index, with: result)
        // The readers have their bytes; L2's copy is for other workers, the disk copy for
        // later starts and restarts.
        if case .success(let fetched) = result {
            l2?.putInBackground(ref.name, fetched.bytes)
            if let cache { await cache.putOnDisk(ref.name, fetched.bytes) }
        }
    }

    /// The ciphertext of a chunk the store keeps as a delta: the delta from the origin, the
    /// base pages it names (if any) through the base snapshot's image (its L1, L2 and origin),
    /// rebuilt and sealed again, and checked against the chunk's own name.
    func rebuild(_ index: Int, _ ref: ChunkRef, from delta: ChunkRef, patches: ChunkPatches) async throws -> [UInt8] {
        let deltaCiphertext = try await store.getChunk(delta.name, root: manifest.header.root)
        counters.withLock { $0.bytesFromOrigin += UInt64(deltaCiphertext.count) }
        let base = patches.base
        let plaintext: [UInt8]
        do {
            plaintext = try await PatchedChunk.rebuild(deltaCiphertext: deltaCiphertext, delta: delta) { page, size in
                guard let base else {
                    throw PatchedChunk.RebuildError(description: "its delta names base page \(page), but the snapshot has no base")
                }
                return try await base.read(offset: page * UInt64(size), length: size)
            }
            let ciphertext = try PatchedChunk.seal(plaintext, expecting: ref)
            counters.withLock { $0.chunksRebuilt += 1 }
            return ciphertext
        } catch let error as PatchedChunk.RebuildError {
            throw ChunkFetchError(chunkIndex: index, chunk: ref.name, store: store.location, kind: nil, reason: error.description)
        }
    }

    /// The chunk from L2 (checked against its name there), or nil on a miss, with the lookup
    /// counted and timed.
    func lookUp(_ ref: ChunkRef, in l2: L2Cache) async -> [UInt8]? {
        let started = ContinuousClock.now
        let found = await l2.get(ref.name)
        metrics.l2LookupDuration.recordNanoseconds((ContinuousClock.now - started).nanoseconds)
        guard let bytes = found, bytes.count == Int(chunkSize) else {
            counters.withLock { $0.l2Misses += 1 }
            metrics.l2Misses.increment()
            return nil
        }
        counters.withLock {
            $0.l2Hits += 1
            $0.bytesFromL2 += UInt64(bytes.count)
        }
        metrics.l2Hits.increment()
        return bytes
    }

    /// Puts a fetched chunk into L1's memory tier, or the holding area without L1.
    func keep(_ index: Int, _ ref: ChunkRef, _ bytes: [UInt8]) {
        if let cache {
            cache.putInMemory(ref.name, bytes)
        } else {
            let capacity = configuration.holdingCapacity
            state.withLock { $0.hold(index, bytes, capacity: capacity) }
        }
    }

    /// Removes chunk `index`'s flight and answers every reader waiting on it.
    func finishFlight(_ index: Int, with result: Result<FetchedChunk, any Error>) {
        let waiters = state.withLock { $0.flights.removeValue(forKey: index) } ?? [:]
        for waiter in waiters.values {
            waiter.timer?.cancel()
            waiter.continuation.resume(with: result)
        }
    }

    /// Starts read-ahead when a read continues a sequential stream of at least
    /// `LazyImageConfiguration.readAheadTrigger` bytes: it starts where the stream ended, or a
    /// little before (concurrent reads of one stream arrive out of order). A read that skips
    /// ahead starts a new stream: a start reads many small files near each other, and
    /// read-ahead there would fetch chunks nobody reads. Each chunk is fetched ahead once per stream.
    func noteRead(offset: UInt64, end: UInt64, endingIn last: Int) {
        let readAhead = configuration.readAhead
        let slack = configuration.streamSlack
        let trigger = configuration.readAheadTrigger
        let range = state.withLock { s -> ClosedRange<Int>? in
            if let streamEnd = s.streamEnd, offset + slack >= streamEnd, offset <= streamEnd {
                s.streamBytes += end - offset
                s.streamEnd = max(streamEnd, end)
            } else {
                s.streamBytes = end - offset
                s.streamEnd = end
                s.readAheadThrough = last
            }
            guard readAhead > 0, s.streamBytes >= trigger else { return nil }
            let from = max(last + 1, s.readAheadThrough + 1)
            let through = min(last + readAhead, manifest.chunks.count - 1)
            guard from <= through else { return nil }
            s.readAheadThrough = through
            return from...through
        }
        guard let range else { return }
        for index in range {
            guard let ref = manifest.chunks[index] else { continue }
            Task { await fetchAhead(index, ref, kind: .readAhead) }
        }
    }

    /// Fetches a chunk ahead of its reader unless it is cached, held or already in flight.
    /// Returns whether it started a fetch. Asking L1 with `contains` does not count as an
    /// access, so fetching ahead never makes a chunk look hot to LRU-K.
    @discardableResult
    func fetchAhead(_ index: Int, _ ref: ChunkRef, kind: OriginFetchKind) async -> Bool {
        if let cache, cache.contains(ref.name) { return false }
        let start = state.withLock { s -> Bool in
            guard s.flights[index] == nil, s.held[index] == nil else { return false }
            s.flights[index] = [:]
            if kind == .prefetch { s.prefetched.insert(index) }
            return true
        }
        if start { await fetch(index, ref, kind: kind) }
        return start
    }

    /// Fetches the chunks an earlier start read, in its first-touch order, at most
    /// `concurrency` at once, and returns when all are fetched or the task is cancelled.
    ///
    /// Prefetch fetches take read-ahead permits: demand reads are served first, and a read
    /// that needs a chunk still queued here promotes it. Chunks already cached or in flight
    /// are skipped. A later read of a chunk this fetched counts as a prefetch hit.
    public func prefetch(_ record: AccessRecord, concurrency: Int) async {
        let width = max(1, concurrency)
        state.withLock {
            let recorded = Set(record.chunks.map(Int.init))
            $0.record = recorded
            $0.recordedUnread = recorded
        }
        await withTaskGroup(of: Void.self) { group in
            var running = 0
            for index in record.chunks.map(Int.init) where index < manifest.chunks.count {
                guard !Task.isCancelled else { break }
                guard let ref = manifest.chunks[index] else { continue }
                if running == width {
                    await group.next()
                    running -= 1
                }
                group.addTask { await self.fetchAhead(index, ref, kind: .prefetch) }
                running += 1
            }
        }
    }
}
