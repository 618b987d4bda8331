/// A chunk's verified ciphertext and the tier a fetch found it in (L2 or the origin).
struct FetchedChunk: Sendable {
    var bytes: [UInt8]
    var tier: ServeTier
}

/// One reader waiting on an in-flight fetch, with the timer that enforces its deadline.
struct FlightWaiter {
    var continuation: CheckedContinuation<FetchedChunk, any Error>
    var timer: Task<Void, Never>?
}

/// Mutable state of a `LazyImage`, guarded by its mutex.
struct ServeState {
    /// In-flight fetches (L2, then the origin) by chunk index, with the readers waiting on each. A finished
    /// fetch removes its entry, so a failure is never cached.
    var flights: [Int: [Int: FlightWaiter]] = [:]
    var nextWaiter = 0
    /// Where the current sequential stream of reads ends, and how many bytes it has read.
    var streamEnd: UInt64?
    var streamBytes: UInt64 = 0
    /// The highest chunk read-ahead has been started for in the current stream.
    var readAheadThrough = -1
    /// Recently fetched ciphertext when there is no L1, bounded and evicted oldest first.
    var held: [Int: [UInt8]] = [:]
    /// Chunks the prefetcher fetched (or is fetching) that no reader has asked for yet; a
    /// read removes its chunk and counts a prefetch hit.
    var prefetched: Set<Int> = []
    /// The chunks of the access record being prefetched (nil without one), and those of them
    /// not read yet.
    var record: Set<Int>?
    var recordedUnread: Set<Int> = []
    var heldOrder: [Int] = []

    mutating func hold(_ index: Int, _ ciphertext: [UInt8], capacity: Int) {
        if held.updateValue(ciphertext, forKey: index) == nil { heldOrder.append(index) }
        while heldOrder.count > capacity {
            held.removeValue(forKey: heldOrder.removeFirst())
        }
    }
}
