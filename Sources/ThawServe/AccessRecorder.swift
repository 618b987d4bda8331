public import ThawSeal
import Synchronization

/// Notes the chunks one start of an image reads, each once, in the order first read, until
/// the start is declared over (an API call, or no read for an idle timeout). The order is what
/// the next start prefetches. For images it notes the 4 KiB blocks read too, the same way:
/// what a relayout copies into the image's hot region.
///
/// Zero chunks are not noted for an image: reading them costs nothing, so there is nothing to
/// prefetch. For a memory snapshot's RAM they are (`includingZeroChunks`): the guest's faults on
/// them still each cost a FUSE round trip, which loading the record into the page cache saves.
public final class AccessRecorder: Sendable {
    private struct State {
        var seen: [Bool]
        var order: [UInt32] = []
        /// One bit per 4 KiB block of the image; empty when blocks are not noted.
        var seenBlocks: [UInt64]
        var blocks: [AccessRecord.BlockRun] = []
        var finished = false
        var lastTouch: ContinuousClock.Instant
    }

    private let state: Mutex<State>

    /// Whether reads of zero chunks are noted too.
    public let includingZeroChunks: Bool

    /// - Parameters:
    ///   - chunkCount: the manifest's chunk count; indices at or above it are ignored.
    ///   - imageSize: when given, blocks read are noted too (images; not memory snapshots).
    public init(chunkCount: Int, includingZeroChunks: Bool = false, imageSize: UInt64? = nil) {
        let words = imageSize.map { Int(($0 / 4096 + 63) / 64) } ?? 0
        state = Mutex(State(seen: Array(repeating: false, count: chunkCount),
                            seenBlocks: Array(repeating: 0, count: words), lastTouch: .now))
        self.includingZeroChunks = includingZeroChunks
    }

    /// Notes the blocks of a read of bytes `offset..<end`, those not read before, in order.
    func touchBlocks(offset: UInt64, end: UInt64) {
        state.withLock { s in
            guard !s.finished, !s.seenBlocks.isEmpty, end > offset else { return }
            let limit = UInt64(s.seenBlocks.count) * 64
            var block = offset / 4096
            let last = min((end - 1) / 4096, limit - 1)
            while block <= last {
                let word = Int(block / 64)
                let bit = UInt64(1) << (block % 64)
                if s.seenBlocks[word] & bit == 0 {
                    s.seenBlocks[word] |= bit
                    if let previous = s.blocks.last, UInt64(previous.first) + UInt64(previous.count) == block {
                        s.blocks[s.blocks.count - 1].count += 1
                    } else {
                        s.blocks.append(AccessRecord.BlockRun(first: UInt32(block), count: 1))
                    }
                }
                block += 1
            }
        }
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

    /// Stops recording and returns the first-touch order of chunks and of blocks; nil when it
    /// was already finished, so of two callers (the API call and the idle timer) only one saves
    /// the record.
    public func finish() -> (chunks: [UInt32], blocks: [AccessRecord.BlockRun])? {
        state.withLock { s in
            guard !s.finished else { return nil }
            s.finished = true
            return (s.order, s.blocks)
        }
    }
}
