public import ThawCache
public import ThawL2
public import ThawNBD
public import ThawServe

/// What a worker agent serves, where, and with how much memory and disk.
public struct AgentConfiguration: Sendable {
    /// Where the NBD server listens; nil serves no NBD (a FUSE-only agent).
    public var nbdAddress: NBDServerAddress? = .tcp(port: 10809)
    /// The control and Prometheus endpoint (HTTP, loopback by default); nil runs none.
    public var controlAddress: ControlAddress? = .tcp(host: "127.0.0.1", port: 7480)
    /// A directory where every served image appears as a read-only file `ID.ext4` over FUSE;
    /// nil mounts nothing.
    public var mountDirectory: String?
    /// The L1 cache every served image shares.
    public var cache = L1Configuration(memoryCapacity: 1 << 30)
    /// The memcached nodes of the L2 cache workers share, asked on an L1 miss before the
    /// origin; nil runs without L2.
    public var l2: L2Cache.Configuration?
    /// The largest chunk L2 must hold (its nodes' item size limit is checked against it at
    /// start); images with larger chunks are served without L2.
    public var l2ChunkSize = 512 * 1024
    /// How long shutdown waits for write-backs to L2 still in flight.
    public var l2FlushTimeout: Duration = .seconds(5)
    /// Read-ahead, origin concurrency and deadline of each served image. Twice the fetches of a
    /// bare `LazyImage`, so that the prefetch (half of them) fetches 16 chunks at once.
    public var image = LazyImageConfiguration(maximumOriginFetches: 32)
    /// Record the first start of a manifest that has no access record yet.
    public var recording = true
    /// A recording ends when no chunk has been read for this long (or when the start is
    /// declared finished through the control endpoint).
    public var recordIdleTimeout: Duration = .seconds(10)
    /// Prefetch what an access record lists when a manifest is opened.
    public var prefetching = true
    /// Chunks the prefetch of one image fetches at once (the image's read-ahead share of the
    /// origin fetches bounds it too). A start waits for its recorded chunks round trip by round
    /// trip: at 16 at once, a start of 77 chunks with 20 ms per request took 0.22 s from its
    /// agent's start to its answer, against 0.27 s at 8; 32 at once was no quicker on two cores.
    public var prefetchConcurrency = 16
    /// The same for a memory snapshot's RAM, whose origin fetches are raised to twice this
    /// (prefetch may hold half of them). Higher than for images: a restored guest touches
    /// hundreds of scattered chunks within a second, and the whole recorded set should arrive
    /// in a few origin round trips rather than one after another.
    public var memoryPrefetchConcurrency = 64
    /// Manifests (ids or unique prefixes) opened at start, before any client asks.
    public var preload: [String] = []
    /// How long SIGTERM lets reads in flight finish before connections are cut.
    public var drainTimeout: Duration = .seconds(10)
    /// How long a served image's use, noted in the metadata, keeps its root from expiring
    /// without being renewed (the agent renews it at a third of this while it serves): what a
    /// crashed agent costs garbage collection.
    public var useLease: Duration = .seconds(300)

    public init() {}
}

/// Where the control endpoint listens.
public enum ControlAddress: Sendable, Hashable, CustomStringConvertible {
    case tcp(host: String, port: Int)
    case unix(path: String)

    public var description: String {
        switch self {
        case .tcp(let host, let port): host.contains(":") ? "http://[\(host)]:\(port)" : "http://\(host):\(port)"
        case .unix(let path): "http+unix://\(path)"
        }
    }
}
