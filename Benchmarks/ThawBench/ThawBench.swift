import Crypto
import Foundation
import HeapModule
import ThawCache
import ThawErasure
import ThawSeal

/// `thaw-bench seal [SECONDS]`: sealing throughput on one core over 512 KiB chunks, with the
/// parts (SHA-256, AES-256-CTR) measured the same way. Prints one line per figure,
/// `name MB/s`, for Benchmarks/push-bench.py to read.
///
/// `thaw-bench eviction [SEED]`: miss ratios of the L1 cache's eviction policies on a
/// generated trace of chunk reads, and their speed (see `EvictionBench`).
///
/// `thaw-bench erasure [SECONDS]`: Reed-Solomon (k = 4, m = 1) encode and rebuild throughput on
/// one core over 512 KiB chunks, counted in chunk bytes, shard copies included.
///
/// `thaw-bench l2-latency NODES PID [FETCHES]`: L2 fetch latency percentiles over real memcached
/// nodes, healthy and with one node stopped (see `L2LatencyBench`).
///
/// `thaw-bench medes [--patch-limit BYTES] [--bases N] RAM_FILE...`: what similar-page
/// deduplication stores for memory snapshots (see `MedesBench`).
///
/// `thaw-bench load --endpoint URL --key-id ID --secret SECRET --function NAME:RATE … --seconds S`:
/// bounded load on the invoke service, open or closed loop (see `LoadGenerator`).
@main
enum ThawBench {
    static func main() async throws {
        let arguments = CommandLine.arguments.dropFirst()
        switch arguments.first {
        case "seal":
            seal(seconds: Double(arguments.dropFirst().first ?? "3") ?? 3)
        case "eviction":
            EvictionBench.run(seed: UInt64(arguments.dropFirst().first ?? "1") ?? 1)
        case "erasure":
            try erasure(seconds: Double(arguments.dropFirst().first ?? "3") ?? 3)
        case "l2-latency":
            try await L2LatencyBench.run(Array(arguments.dropFirst()))
        case "medes":
            try MedesBench.run(Array(arguments.dropFirst()))
        case "load":
            try await LoadGenerator.run(Array(arguments.dropFirst()))
        default:
            FileHandle.standardError.write(Data("usage: thaw-bench seal [SECONDS] | thaw-bench eviction [SEED] | thaw-bench erasure [SECONDS] | thaw-bench l2-latency NODES PID [FETCHES] | thaw-bench medes [--patch-limit BYTES] [--bases N] RAM_FILE... | thaw-bench load --endpoint URL --key-id ID --secret SECRET --function NAME:RATE... --seconds S [--max-requests N] [--closed WORKERS]\n".utf8))
            exit(2)
        }
    }

    static func seal(seconds: Double) {
        MallocTuning.keepLargeBuffers()
        let chunkSize = 512 * 1024
        var generator = SystemRandomNumberGenerator()
        // Several distinct chunks, so nothing is served from a tiny cache of one buffer.
        let chunks = (0..<8).map { _ in (0..<chunkSize).map { _ in UInt8.random(in: 0...255, using: &generator) } }
        let salt = Salt(root: .initial, replica: 0)
        var sink: UInt8 = 0

        let seal = measure(seconds: seconds, bytesPerRound: chunkSize) { round in
            let sealed = ChunkSealer.seal(chunks[round % chunks.count], salt: salt)
            sink ^= sealed.name.bytes[0]
        }
        let sha = measure(seconds: seconds, bytesPerRound: chunkSize) { round in
            sink ^= SHA256.hash(data: chunks[round % chunks.count]).withUnsafeBytes { $0[0] }
        }
        let key = ChunkSealer.key(for: chunks[0], salt: salt)
        let aes = measure(seconds: seconds, bytesPerRound: chunkSize) { round in
            let plain = chunks[round % chunks.count]
            // Decrypting a range from 0 is the full CTR pass, through the same code path as sealing.
            sink ^= ChunkSealer.decrypt(plain, range: 0..<plain.count, key: key)[0]
        }
        print("seal \(format(seal))")
        print("sha256 \(format(sha))")
        print("aes-256-ctr \(format(aes))")
        if sink == 0x5a { print("") }  // keeps the work observable
    }

    static func erasure(seconds: Double) throws {
        let k = 4, m = 1, chunkSize = 512 * 1024
        let code = try ReedSolomon(dataShards: k, parityShards: m)
        var generator = SystemRandomNumberGenerator()
        let chunks = (0..<8).map { _ in
            (0..<k).map { _ in (0..<(chunkSize / k)).map { _ in UInt8.random(in: 0...255, using: &generator) } }
        }
        let parities = try chunks.map { try code.parity(of: $0) }
        var sink: UInt8 = 0
        let encode = measure(seconds: seconds, bytesPerRound: chunkSize) { round in
            sink ^= (try? code.parity(of: chunks[round % chunks.count]))?[0][0] ?? 0
        }
        // The worst case for k = 4, m = 1: a data shard lost, rebuilt from parity.
        let rebuild = measure(seconds: seconds, bytesPerRound: chunkSize) { round in
            let data = chunks[round % chunks.count]
            let shards: [Int: [UInt8]] = [1: data[1], 2: data[2], 3: data[3], 4: parities[round % chunks.count][0]]
            sink ^= (try? code.data(from: shards))?[0][0] ?? 0
        }
        print("rs-4+1-encode \(format(encode))")
        print("rs-4+1-rebuild \(format(rebuild))")
        if sink == 0x5a { print("") }
    }

    /// Runs `body` for `seconds`; returns MB/s (10^6 bytes).
    static func measure(seconds: Double, bytesPerRound: Int, _ body: (Int) -> Void) -> Double {
        for round in 0..<8 { body(round) }  // warm up
        let clock = ContinuousClock()
        let start = clock.now
        var rounds = 0
        while true {
            for _ in 0..<16 {
                body(rounds)
                rounds += 1
            }
            let elapsed = clock.now - start
            let s = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            if s >= seconds { return Double(rounds * bytesPerRound) / s / 1e6 }
        }
    }

    static func format(_ value: Double) -> String { String(format: "%.1f", value) }
}

/// The eviction benchmark. The trace models a worker serving many functions' images: a hot
/// working set of chunks read with Zipf-like popularity, and now and then a function that
/// reads a large file once from start to end, a sequential scan of chunks never read again,
/// while the hot reads go on. A block device reads a 512 KiB chunk in several requests in a
/// row (1 to 4 here), so every touch of a chunk is a short run of references to it. Every
/// policy replays the same trace through `PolicySimulation` at the same capacity; Belady's
/// optimal policy, which knows the future, shows how many misses any policy could avoid.
enum EvictionBench {
    static let chunkSize = 512 * 1024
    static let hotChunks = 4000
    static let zipfExponent = 0.9
    static let rounds = 60
    static let hotTouchesPerRound = 10_000
    static let scanLength = 3000
    static let capacities = [500, 1000, 2000, 3000]
    static let largeCapacity = 131_072

    struct Trace {
        var keys: [UInt64] = []
        var distinct = 0
    }

    struct Result {
        var misses: Int
        var missRatio: Double
        var evictions: Int
        var referencesPerSecond: Double
    }

    static func run(seed: UInt64) {
        let trace = makeTrace(seed: seed, hotChunks: hotChunks)
        print("thaw-bench eviction, seed \(seed): \(trace.keys.count) references to \(trace.distinct) chunks of 512 KiB")
        print("  \(hotChunks) hot chunks read with Zipf popularity (s = \(zipfExponent)); after every \(hotTouchesPerRound) touches, "
            + "a scan of \(scanLength) one-off chunks interleaved with as many hot touches; 1-4 reads per touch")
        print("  LRU-K: K = 2, " + describe(LRUKParameters()) + "; LRU-2 no corr.: the same with no correlated period")
        print("  compulsory misses (first reads, the same for every policy): \(percent(Double(trace.distinct) / Double(trace.keys.count)))")
        print("")
        print("miss ratio (lower is better)")
        print(row(["capacity", "OPT", "LRU-K", "LRU", "FIFO", "LRU-2 no corr.", "LRU-K vs LRU: misses", "avoidable misses"]))
        var speeds: [String: [Double]] = [:]
        for capacity in capacities {
            let bytes = capacity * chunkSize
            let lruK = replay(LRUKPolicy<UInt64>(), trace, capacity: bytes)
            let lru = replay(LRUPolicy<UInt64>(), trace, capacity: bytes)
            let fifo = replay(FIFOPolicy<UInt64>(), trace, capacity: bytes)
            let plain = replay(LRUKPolicy<UInt64>(LRUKParameters(correlatedReferencePeriod: 0)), trace, capacity: bytes)
            let optimal = optimalMisses(trace, capacity: capacity)
            for (name, result) in [("LRU-K", lruK), ("LRU", lru), ("FIFO", fifo)] {
                speeds[name, default: []].append(result.referencesPerSecond)
            }
            let fewer = 1 - Double(lruK.misses) / Double(lru.misses)
            let fewerAvoidable = 1 - Double(lruK.misses - trace.distinct) / Double(lru.misses - trace.distinct)
            print(row(["\(capacity) (\((capacity * chunkSize) >> 20) MiB)",
                       percent(Double(optimal) / Double(trace.keys.count)), percent(lruK.missRatio), percent(lru.missRatio),
                       percent(fifo.missRatio), percent(plain.missRatio),
                       String(format: "%.1f%% fewer", fewer * 100), String(format: "%.1f%% fewer", fewerAvoidable * 100)]))
        }

        // Speed at a large cache, where a policy that scanned its keys for a victim would crawl.
        let bigTrace = makeTrace(seed: seed, hotChunks: 4 * largeCapacity)
        let bigBytes = largeCapacity * chunkSize
        let big = [
            ("LRU-K", replay(LRUKPolicy<UInt64>(), bigTrace, capacity: bigBytes)),
            ("LRU", replay(LRUPolicy<UInt64>(), bigTrace, capacity: bigBytes)),
            ("FIFO", replay(FIFOPolicy<UInt64>(), bigTrace, capacity: bigBytes)),
        ]
        print("")
        print("speed, million references per second, fastest of 3 runs (a reference is a lookup, and on a miss the evictions and the insertion; one core)")
        print(row(["policy"] + capacities.map { "\($0) chunks" } + ["\(largeCapacity) chunks*"]))
        for (name, result) in big {
            print(row([name] + speeds[name]!.map { String(format: "%.1f", $0 / 1e6) } + [String(format: "%.1f", result.referencesPerSecond / 1e6)]))
        }
        print("* \(bigTrace.keys.count) references, the hot set 4 × \(largeCapacity) chunks; "
            + big.map { "\($0.0) \($0.1.evictions) evictions" }.joined(separator: ", "))
    }

    /// Replays the trace three times from an empty cache (the counts are the same each time)
    /// and reports the fastest run, so that other work on the machine disturbs the speed less.
    static func replay<Policy: EvictionPolicy<UInt64>>(_ policy: Policy, _ trace: Trace, capacity: Int) -> Result {
        var fastest = Double.infinity
        var simulation = PolicySimulation(policy: policy, capacity: capacity)
        for _ in 0..<3 {
            simulation = PolicySimulation(policy: policy, capacity: capacity)
            let clock = ContinuousClock()
            let start = clock.now
            for key in trace.keys { simulation.reference(key, size: chunkSize) }
            let elapsed = clock.now - start
            fastest = min(fastest, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
        }
        return Result(misses: simulation.misses, missRatio: simulation.missRatio, evictions: simulation.evictions,
                      referencesPerSecond: Double(trace.keys.count) / fastest)
    }

    /// Belady's MIN: on a miss in a full cache, evict the chunk whose next reference is
    /// furthest away. A lower bound on the misses of any policy that cannot see the future.
    static func optimalMisses(_ trace: Trace, capacity: Int) -> Int {
        struct Pending: Comparable {
            var next: Int
            var key: UInt64
            static func < (a: Pending, b: Pending) -> Bool { a.next < b.next }
        }
        var nextUse = [Int](repeating: Int.max, count: trace.keys.count)
        var seen: [UInt64: Int] = [:]
        for position in trace.keys.indices.reversed() {
            nextUse[position] = seen[trace.keys[position]] ?? Int.max
            seen[trace.keys[position]] = position
        }
        var resident: [UInt64: Int] = [:]  // chunk → its next reference
        var byNextUse = Heap<Pending>()  // stale entries (the chunk was used since) are skipped
        var misses = 0
        for (position, key) in trace.keys.enumerated() {
            if resident[key] == nil {
                misses += 1
                if resident.count == capacity {
                    while let furthest = byNextUse.popMax() {
                        if resident[furthest.key] == furthest.next {
                            resident[furthest.key] = nil
                            break
                        }
                    }
                }
            }
            resident[key] = nextUse[position]
            byNextUse.insert(Pending(next: nextUse[position], key: key))
        }
        return misses
    }

    static func makeTrace(seed: UInt64, hotChunks: Int) -> Trace {
        var generator = SplitMix64(seed: seed)
        // Cumulative Zipf weights over the hot chunks' popularity ranks.
        var cumulative: [Double] = []
        cumulative.reserveCapacity(hotChunks)
        var total = 0.0
        for rank in 1...hotChunks {
            total += 1 / pow(Double(rank), zipfExponent)
            cumulative.append(total)
        }
        var keys: [UInt64] = []
        var nextOneOff: UInt64 = 1 << 40
        func touch(_ key: UInt64) {
            for _ in 0..<Int.random(in: 1...4, using: &generator) { keys.append(key) }
        }
        func hot() -> UInt64 {
            let target = Double.random(in: 0..<total, using: &generator)
            var low = 0, high = hotChunks - 1
            while low < high {
                let middle = (low + high) / 2
                if cumulative[middle] <= target { low = middle + 1 } else { high = middle }
            }
            return UInt64(low)
        }
        for _ in 0..<rounds {
            for _ in 0..<hotTouchesPerRound { touch(hot()) }
            for _ in 0..<scanLength {
                touch(nextOneOff)
                nextOneOff += 1
                touch(hot())
            }
        }
        return Trace(keys: keys, distinct: Set(keys).count)
    }

    static func describe(_ p: LRUKParameters) -> String {
        "correlated period \(p.correlatedReferencePeriod), retained period \(p.retainedInformationPeriod), retained limit \(p.retainedLimit)"
    }

    static func percent(_ ratio: Double) -> String { String(format: "%.2f%%", ratio * 100) }

    static func row(_ cells: [String]) -> String {
        cells.enumerated().map { index, cell in
            index == cells.count - 1 ? cell : cell.padding(toLength: max(index == 0 ? 18 : 15, cell.count + 2), withPad: " ", startingAt: 0)
        }.joined()
    }
}

/// SplitMix64: a small seeded generator, so the trace is the same on every run and machine.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
