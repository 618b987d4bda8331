import Synchronization

/// Notes the chunks one start of an image reads, each once, in the order first read, until
/// the start is declared over (an API call, or no read for an idle timeout). The order is what
/// the next start prefetches.
///
/// Zero chunks are not noted for an image: reading them costs nothing, so there is nothing to
/// prefetch. For a memory snapshot's RAM they are (`includingZeroChunks`): the guest's faults on
/// them still each cost a FUSE round trip, which loading the record into the page cache saves.
public final class AccessRecorder: Sendable {
    private struct State {
        var seen: [Bool]
        var order: [UInt32] = []
        var finished = false
        var lastTouch: ContinuousClock.Instant
    }

    private let state: Mutex<State>

    /// Whether reads of zero chunks are noted too.
    public let includingZeroChunks: Bool

    /// - Parameter chunkCount: the manifest's chunk count; indices at or above it are ignored.
    public init(chunkCount: Int, includingZeroChunks: Bool = false) {
        state = Mutex(State(seen: Array(repeating: false, count: chunkCount), lastTouch: .now))
        self.includingZeroChunks = includingZeroChunks
    }

    /// Notes a read of chunk `index` (a no-op once finished or when it was read before).
    func touch(_ index: Int) {
        let now = ContinuousClock.now
        state.withLock { s in
            guard !s.finished else { return }
            s.lastTouch = now
            guard index >= 0, index < s.seen.count, !s.seen[index] else { return }
            s.seen[index] = true
            s.order.append(UInt32(index))
        }
    }

    /// Whether it still records.
    public var isRecording: Bool { state.withLock { !$0.finished } }

    /// Chunks noted so far.
    public var count: Int { state.withLock { $0.order.count } }

    /// Time since the last read (or since recording began, before any read).
    public var idleTime: Duration { ContinuousClock.now - state.withLock { $0.lastTouch } }

    /// Stops recording and returns the first-touch order; nil when it was already finished,
    /// so of two callers (the API call and the idle timer) only one saves the record.
    public func finish() -> [UInt32]? {
        state.withLock { s in
            guard !s.finished else { return nil }
            s.finished = true
            return s.order
        }
    }
}
