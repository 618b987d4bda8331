import Synchronization
public import ThawErasure
public import ThawSeal

/// The shared L2 cache: each chunk's ciphertext as k data and m parity shards (Reed-Solomon),
/// each shard on a different memcached node chosen by rendezvous hashing of the chunk name.
///
/// A read asks every node for its shard at once and rebuilds the chunk from the first k that
/// arrive, so one slow or dead node costs nothing; the rebuilt chunk is checked against its
/// name, and when a bad shard spoils it, the other k-subsets of the shards received are tried.
/// With fewer than k good shards the read is a miss, for the origin to serve.
public final class L2Cache: Sendable {
    public struct Configuration: Sendable {
        public var nodes: [(host: String, port: Int)]
        public var dataShards = 4
        public var parityShards = 1
        public var timeout: Duration = .milliseconds(200)
        public var connectionsPerNode = 2
        /// Seconds memcached keeps a shard; 0 keeps it until evicted.
        public var expiry: UInt32 = 0

        public init(nodes: [(host: String, port: Int)]) { self.nodes = nodes }
    }

    public let configuration: Configuration
    let code: ReedSolomon
    let placement: ShardPlacement
    let nodes: [MemcachedNode]
    let counters = Mutex(L2Statistics())

    /// Connects to the nodes' settings and checks that each stores shards of `chunkSize`.
    ///
    /// - Throws: `L2Error` naming the node when it is unreachable or its item size limit
    ///   (`memcached -I`) is below a shard: at start-up, never at the first write.
    public static func start(_ configuration: Configuration, chunkSize: Int) async throws -> L2Cache {
        let cache = try L2Cache(configuration)
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

    init(_ configuration: Configuration) throws {
        let total = configuration.dataShards + configuration.parityShards
        guard configuration.nodes.count >= total else {
            throw L2Error("\(configuration.dataShards) + \(configuration.parityShards) shards need as many L2 nodes, but \(configuration.nodes.count) are configured")
        }
        do {
            code = try ReedSolomon(dataShards: configuration.dataShards, parityShards: configuration.parityShards)
        } catch {
            throw L2Error("\(error)")
        }
        self.configuration = configuration
        placement = ShardPlacement(nodes: configuration.nodes.map { "\($0.host):\($0.port)" })
        nodes = configuration.nodes.map {
            MemcachedNode(host: $0.host, port: $0.port, connections: configuration.connectionsPerNode, timeout: configuration.timeout)
        }
    }

    public var statistics: L2Statistics { counters.withLock { $0 } }

    static func key(_ name: ChunkName, shard: Int) -> String { "thaw:\(name.hex):\(shard)" }

    /// Stores `ciphertext` (already checked against `name`) as k + m shards. Nodes that fail
    /// are skipped: the chunk is still readable while k shards are stored.
    public func put(_ name: ChunkName, _ ciphertext: [UInt8]) async {
        let k = code.dataShards, m = code.parityShards
        let data = ShardFormat.split(ciphertext, k: k)
        guard let parity = try? code.parity(of: data) else { return }
        let shards = data + parity
        let targets = placement.nodes(for: name.bytes, count: k + m)
        let failures = await withTaskGroup(of: Bool.self) { group in
            for (index, node) in targets.enumerated() {
                let value = ShardFormat.encode(shards[index], index: index, k: k, m: m, chunkLength: ciphertext.count)
                group.addTask { [nodes, configuration] in
                    (try? await nodes[node].set(Self.key(name, shard: index), value, expiry: configuration.expiry)) == nil
                }
            }
            var failures = 0
            for await failed in group where failed { failures += 1 }
            return failures
        }
        counters.withLock {
            $0.chunksStored += 1
            $0.shardWriteFailures += failures
        }
    }

    /// The chunk's verified ciphertext, or nil when L2 cannot give it (a miss, too few shards,
    /// or shards that never rebuild a chunk matching its name).
    ///
    /// The shard requests run as tasks of their own: a read returns as soon as k good shards
    /// have arrived, and a slow node's request finishes (or times out) after it, unwaited.
    public func get(_ name: ChunkName) async -> [UInt8]? {
        let k = code.dataShards, m = code.parityShards
        let targets = placement.nodes(for: name.bytes, count: k + m)
        let started = ContinuousClock.now
        let (answers, sink) = AsyncStream.makeStream(of: (index: Int, shard: (shard: [UInt8], chunkLength: Int)?).self)
        for (index, node) in targets.enumerated() {
            Task { [nodes] in
                let key = Self.key(name, shard: index)
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
        guard let data = try? code.data(from: chosen) else { return nil }
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
    /// Shards a read did without: missing, unreadable, or not there when the chunk was rebuilt.
    public var shardsMissingOrLate = 0
    /// Reads with k or more shards that never rebuilt the named chunk (bad shards).
    public var badChunks = 0
    /// Read latencies in microseconds, for percentiles.
    public var latenciesMicroseconds: [Int] = []

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
