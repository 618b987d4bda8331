import Synchronization
import ThawErasure
public import ThawSeal

/// The shared L2 cache: each chunk's ciphertext as k data and m parity shards (Reed-Solomon),
/// each shard on a different memcached node chosen by rendezvous hashing of the chunk name.
///
/// A read asks every node for its shard at once and rebuilds the chunk from the first k that
/// arrive, so one slow or dead node costs nothing; the rebuilt chunk is checked against its
/// name, and when a bad shard spoils it, the other k-subsets of the shards received are tried.
/// With fewer than k good shards the read is a miss, for the origin to serve.
///
/// With m = 0 there is no parity: k = 1 keeps one whole copy of each chunk on one node, and
/// k > 1 stripes it without redundancy (both for comparison; any lost node loses chunks).
public final class L2Cache: Sendable {
    public struct Configuration: Sendable {
        public var nodes: [(host: String, port: Int)]
        public var dataShards = 4
        public var parityShards = 1
        public var timeout: Duration = .milliseconds(200)
        public var connectionsPerNode = 2
        /// Seconds memcached keeps a shard; 0 keeps it until evicted.
        public var expiry: UInt32 = 0
        /// Write-backs (`putInBackground`) in flight at most; past it new ones are dropped, so
        /// a slow L2 never holds an unbounded number of chunks in memory.
        public var maximumPendingWrites = 64

        public init(nodes: [(host: String, port: Int)]) { self.nodes = nodes }
    }

    public let configuration: Configuration
    /// The largest chunk every node was checked to hold the shards of (`start`).
    public let chunkSize: Int
    /// The Reed-Solomon code; nil without parity shards.
    let code: ReedSolomon?
    let dataShards: Int
    let parityShards: Int
    let placement: ShardPlacement
    let nodes: [MemcachedNode]
    let counters = Mutex(L2Statistics())
    let pendingWrites = Mutex(0)
    /// Set by `close`: later write-backs are dropped rather than reopening connections.
    let closed = Mutex(false)

    /// Connects to the nodes' settings and checks that each stores shards of `chunkSize`.
    ///
    /// - Throws: `L2Error` naming the node when it is unreachable or its item size limit
    ///   (`memcached -I`) is below a shard: at start-up, never at the first write.
    public static func start(_ configuration: Configuration, chunkSize: Int) async throws -> L2Cache {
        let cache = try L2Cache(configuration, chunkSize: chunkSize)
        let needed = ShardFormat.headerSize + ShardFormat.shardLength(chunkLength: chunkSize, k: configuration.dataShards)
        for node in cache.nodes {
            let limit: Int
            do {
                limit = try await node.itemSizeLimit()
            } catch {
                throw L2Error("L2 node \(node.address) cannot be used: \(error)")
            }
            // memcached keeps about 100 bytes of its own with each item.
            guard limit - 128 >= needed else {
                throw L2Error("L2 node \(node.address) stores items of at most \(limit) bytes, but a shard of a \(chunkSize)-byte chunk in \(configuration.dataShards) data shards needs \(needed) (start memcached with a larger -I)")
            }
        }
        return cache
    }

    init(_ configuration: Configuration, chunkSize: Int) throws {
        let k = configuration.dataShards, m = configuration.parityShards
        guard k >= 1, m >= 0, k + m <= 255 else {
            throw L2Error("L2 shards need k >= 1 data shards, m >= 0 parity shards and k + m <= 255 (got k = \(k), m = \(m))")
        }
        guard configuration.nodes.count >= k + m else {
            throw L2Error("\(k) + \(m) shards need as many L2 nodes, but \(configuration.nodes.count) are configured")
        }
        let addresses = configuration.nodes.map { "\($0.host):\($0.port)" }
        if let repeated = Dictionary(grouping: addresses, by: { $0 }).first(where: { $0.value.count > 1 })?.key {
            throw L2Error("L2 node \(repeated) is listed twice: each shard must go to a different node")
        }
        do {
            code = m == 0 ? nil : try ReedSolomon(dataShards: k, parityShards: m)
        } catch {
            throw L2Error("\(error)")
        }
        dataShards = k
        parityShards = m
        self.chunkSize = chunkSize
        self.configuration = configuration
        placement = ShardPlacement(nodes: addresses)
        nodes = configuration.nodes.map {
            MemcachedNode(host: $0.host, port: $0.port, connections: configuration.connectionsPerNode, timeout: configuration.timeout)
        }
    }

    public var statistics: L2Statistics { counters.withLock { $0 } }

    /// The memcached key of one shard of a chunk: `thaw:NAME:K+M:INDEX`. The coding is part of
    /// the key, so workers set up with different k or m (a change rolling out) never read or
    /// overwrite each other's shards.
    public func key(_ name: ChunkName, shard: Int) -> String { "thaw:\(name.hex):\(dataShards)+\(parityShards):\(shard)" }

    /// Stores `ciphertext` (already checked against `name`) as k + m shards. Nodes that fail
    /// are skipped: the chunk is still readable while k shards are stored.
    public func put(_ name: ChunkName, _ ciphertext: [UInt8]) async {
        let k = dataShards, m = parityShards
        let data = ShardFormat.split(ciphertext, k: k)
        var shards = data
        if let code {
            guard let parity = try? code.parity(of: data) else { return }
            shards += parity
        }
        let targets = placement.nodes(for: name.bytes, count: k + m)
        let failures = await withTaskGroup(of: Bool.self) { group in
            for (index, node) in targets.enumerated() {
                let value = ShardFormat.encode(shards[index], index: index, k: k, m: m, chunkLength: ciphertext.count)
                group.addTask { [nodes, configuration] in
                    (try? await nodes[node].set(self.key(name, shard: index), value, expiry: configuration.expiry)) == nil
                }
            }
            var failures = 0
            for await failed in group where failed { failures += 1 }
            return failures
        }
        counters.withLock {
            // Readable while at least k of its shards are stored.
            if failures <= m { $0.chunksStored += 1 }
            $0.shardWriteFailures += failures
        }
    }

    /// Stores a chunk the origin gave after an L2 miss, without delaying the reader that waits
    /// for it: the write runs as a task of its own, and `flush` waits for those in flight.
    /// Returns false when too many write-backs are pending and this one is dropped.
    @discardableResult
    public func putInBackground(_ name: ChunkName, _ ciphertext: [UInt8]) -> Bool {
        let limit = configuration.maximumPendingWrites
        guard !closed.withLock({ $0 }) else { return false }
        let admitted = pendingWrites.withLock { pending -> Bool in
            guard pending < limit else { return false }
            pending += 1
            return true
        }
        guard admitted else {
            counters.withLock { $0.writeBacksDropped += 1 }
            return false
        }
        Task {
            await put(name, ciphertext)
            pendingWrites.withLock { $0 -= 1 }
        }
        return true
    }

    /// Waits until the write-backs in flight have finished, or `timeout` has passed; returns
    /// how many are still pending (0 when all landed). Called before a worker exits, so the
    /// chunks its last start fetched reach L2 for the next.
    public func flush(timeout: Duration = .seconds(5)) async -> Int {
        let deadline = ContinuousClock.now + timeout
        while true {
            let pending = pendingWrites.withLock { $0 }
            if pending == 0 || ContinuousClock.now >= deadline || Task.isCancelled { return pending }
            try? await Task.sleep(for: .milliseconds(5))
        }
    }

    /// Closes every node's connections; write-backs asked for after this are dropped.
    public func close() async {
        closed.withLock { $0 = true }
        for node in nodes { await node.close() }
    }

    /// The chunk's verified ciphertext, or nil when L2 cannot give it (a miss, too few shards,
    /// or shards that never rebuild a chunk matching its name).
    ///
    /// The shard requests run as tasks of their own: a read returns as soon as k good shards
    /// have arrived, and a slow node's request finishes (or times out) after it, unwaited.
    public func get(_ name: ChunkName) async -> [UInt8]? {
        let k = dataShards, m = parityShards
        let targets = placement.nodes(for: name.bytes, count: k + m)
        let started = ContinuousClock.now
        let (answers, sink) = AsyncStream.makeStream(of: (index: Int, shard: (shard: [UInt8], chunkLength: Int)?).self)
        for (index, node) in targets.enumerated() {
            let key = key(name, shard: index)
            Task { [nodes] in
                let value = try? await nodes[node].get([key])[key]
                sink.yield((index, value.flatMap { ShardFormat.decode($0, index: index, k: k, m: m) }))
            }
        }
        var received: [Int: [UInt8]] = [:]
        var lengths: [Int: Int] = [:]
        var tried = Set<[Int]>()
        var answered = 0
        var chunk: [UInt8]?
        search: for await answer in answers {
            answered += 1
            if let shard = answer.shard {
                received[answer.index] = shard.shard
                lengths[answer.index] = shard.chunkLength
            }
            if received.count >= k {
                // Every k-subset not tried yet; the first that rebuilds the named chunk wins.
                for subset in Self.subsets(of: received.keys.sorted(), size: k) where tried.insert(subset).inserted {
                    let agreed = Set(subset.map { lengths[$0]! })
                    if agreed.count == 1, let rebuilt = rebuild(subset, from: received, chunkLength: agreed.first!, name: name) {
                        chunk = rebuilt
                        break search
                    }
                }
            }
            if answered == k + m { break }
        }
        sink.finish()
        let elapsed = ContinuousClock.now - started
        counters.withLock {
            $0.record(latency: elapsed)
            if let chunk {
                $0.hits += 1
                $0.bytesRead += UInt64(chunk.count)
            } else {
                $0.misses += 1
                if received.count >= k { $0.badChunks += 1 }
            }
            $0.shardsMissingOrLate += k + m - received.count
        }
        return chunk
    }

    func rebuild(_ subset: [Int], from received: [Int: [UInt8]], chunkLength: Int, name: ChunkName) -> [UInt8]? {
        let chosen = Dictionary(uniqueKeysWithValues: subset.map { ($0, received[$0]!) })
        let data: [[UInt8]]
        if let code {
            guard let rebuilt = try? code.data(from: chosen) else { return nil }
            data = rebuilt
        } else {
            // Without parity the only k-subset is the data shards themselves.
            data = (0..<dataShards).map { chosen[$0]! }
        }
        var chunk = data.flatMap { $0 }
        guard chunkLength <= chunk.count else { return nil }
        chunk.removeLast(chunk.count - chunkLength)
        return name.matches(chunk) ? chunk : nil
    }

    /// Every subset of `items` with `size` members, in order.
    static func subsets(of items: [Int], size: Int) -> [[Int]] {
        guard size > 0 else { return [[]] }
        guard items.count >= size else { return [] }
        let rest = Array(items.dropFirst())
        return subsets(of: rest, size: size - 1).map { [items[0]] + $0 } + subsets(of: rest, size: size)
    }
}

/// What an L2 cache has done, for metrics and `thaw run`'s breakdown.
public struct L2Statistics: Sendable, Equatable {
    public var hits = 0
    public var misses = 0
    public var bytesRead: UInt64 = 0
    public var chunksStored = 0
    public var shardWriteFailures = 0
    /// Write-backs dropped because too many were already pending.
    public var writeBacksDropped = 0
    /// Shards a read did without: missing, unreadable, or not there when the chunk was rebuilt.
    public var shardsMissingOrLate = 0
    /// Reads with k or more shards that never rebuilt the named chunk (bad shards).
    public var badChunks = 0
    /// Read latencies in microseconds, for percentiles.
    public var latenciesMicroseconds: [Int] = []

    public init() {}

    mutating func record(latency: Duration) {
        let micros = Int(latency.components.seconds) * 1_000_000 + Int(latency.components.attoseconds / 1_000_000_000_000)
        latenciesMicroseconds.append(micros)
        // A bounded sample: the newest reads.
        if latenciesMicroseconds.count > 200_000 { latenciesMicroseconds.removeFirst(100_000) }
    }

    /// The latency under which `fraction` of the reads fell, in microseconds.
    public func latencyPercentile(_ fraction: Double) -> Int? {
        guard !latenciesMicroseconds.isEmpty else { return nil }
        let sorted = latenciesMicroseconds.sorted()
        return sorted[min(sorted.count - 1, Int(Double(sorted.count) * fraction))]
    }
}

/// Why the L2 cache cannot start, naming the node or setting.
public struct L2Error: Error, CustomStringConvertible, Sendable {
    public var description: String
    init(_ description: String) { self.description = description }
}
