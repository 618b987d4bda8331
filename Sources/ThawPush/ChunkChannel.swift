import Dispatch
import Synchronization

/// One chunk of plaintext on its way from the flattening thread to the sealers.
struct ChunkJob: Sendable {
    var index: Int
    var plaintext: [UInt8]
}

/// Hands chunks from the flattening thread (synchronous, blocking) to the async sealing and
/// upload tasks, holding at most `capacity` chunks in flight so memory stays bounded however
/// far the flattener runs ahead of the store.
final class ChunkChannel: Sendable {
    let jobs: AsyncStream<ChunkJob>
    private let continuation: AsyncStream<ChunkJob>.Continuation
    private let slots: DispatchSemaphore
    private let closed = Atomic<Bool>(false)

    init(capacity: Int) {
        (jobs, continuation) = AsyncStream.makeStream(of: ChunkJob.self)
        slots = DispatchSemaphore(value: capacity)
    }

    /// Called by the producer; blocks while `capacity` chunks are in flight.
    /// - Throws: `PushError` once the consumer has stopped.
    func send(_ job: ChunkJob) throws {
        slots.wait()
        if closed.load(ordering: .acquiring) {
            slots.signal()
            throw PushError("push stopped")
        }
        continuation.yield(job)
    }

    /// Called by the consumer when a chunk's memory is released.
    func release() { slots.signal() }

    /// The producer has sent everything (or failed).
    func finish() { continuation.finish() }

    /// The consumer has stopped: wakes a blocked producer, which then fails.
    func close() {
        closed.store(true, ordering: .releasing)
        slots.signal()
    }
}
