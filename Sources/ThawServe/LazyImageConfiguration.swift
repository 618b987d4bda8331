/// Tuning for a `LazyImage`. The defaults suit a cold start over a remote origin: a few chunks of
/// read-ahead hide origin latency for sequential streams without flooding the origin.
public struct LazyImageConfiguration: Sendable, Hashable {
    /// Chunks fetched ahead of a sequential stream (0 turns read-ahead off).
    public var readAhead: Int
    /// Origin fetches in flight at once, shared by demand reads and read-ahead.
    public var maximumOriginFetches: Int
    /// How long a read may wait for one chunk before it fails; the fetch itself goes on.
    public var deadline: Duration
    /// Chunks kept in memory when there is no L1 cache, so read-ahead and reads smaller than a
    /// chunk do not fetch the same chunk again. Never fewer than `readAhead + 1`.
    public var holdingCapacity: Int

    /// Bytes a sequential stream must have read before read-ahead starts: a whole small file
    /// read in order is not yet a stream worth fetching ahead for.
    public var readAheadTrigger: UInt64
    /// How far before the stream's end a read may start and still continue it, since concurrent
    /// reads of one stream (kernel readahead, a VMM's queue) arrive out of order.
    public var streamSlack: UInt64

    public init(readAhead: Int = 4, maximumOriginFetches: Int = 16, deadline: Duration = .seconds(30),
                holdingCapacity: Int = 16, readAheadTrigger: UInt64 = 512 * 1024, streamSlack: UInt64 = 256 * 1024) {
        self.readAhead = max(0, readAhead)
        self.readAheadTrigger = readAheadTrigger
        self.streamSlack = streamSlack
        self.maximumOriginFetches = max(1, maximumOriginFetches)
        self.deadline = deadline
        self.holdingCapacity = max(holdingCapacity, readAhead + 1)
    }

    /// Read-ahead may hold at most half the origin fetches, so demand reads always find room.
    var readAheadFetchLimit: Int { max(1, maximumOriginFetches / 2) }
}
