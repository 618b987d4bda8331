import Foundation
import ThawL2
import ThawSeal

/// `thaw-bench l2-latency NODES PID [FETCHES] [TIMEOUT_MS] [PHASE_LIMIT_S]`: chunk fetch latency from L2 over
/// real memcached nodes (NODES: host:port,...), for 4-of-5 coding, 4-of-4 striping and a single
/// whole copy, first with every node healthy, then with the node whose process is PID stopped
/// (SIGSTOP, resumed with SIGCONT afterwards).
///
/// Each coding stores a set of random 512 KiB chunks, then fetches them one at a time in a
/// random order: a fetch's latency runs from the request to the verified chunk, or to the
/// miss that would send the reader to the origin. A phase ends after FETCHES fetches, or
/// earlier when PHASE_LIMIT_S seconds are given and have passed (a coding that waits out the
/// timeout on most fetches takes about half an hour for 10,000); the fetch count is printed
/// with the percentiles. Prints one line per coding and state:
/// `l2 CODING STATE fetches=N misses=N p50=µs p99=µs p999=µs`.
enum L2LatencyBench {
    static let chunkSize = 512 * 1024
    static let distinctChunks = 256

    static func run(_ arguments: [String]) async throws {
        guard arguments.count >= 2, let pid = pid_t(arguments[1]) else {
            throw BenchError("usage: thaw-bench l2-latency host:port,... PID [FETCHES] [TIMEOUT_MS] [PHASE_LIMIT_S]")
        }
        let nodes = try arguments[0].split(separator: ",").map { entry -> (host: String, port: Int) in
            guard let colon = entry.lastIndex(of: ":"), let port = Int(entry[entry.index(after: colon)...]) else {
                throw BenchError("'\(entry)' is not host:port")
            }
            return (String(entry[..<colon]), port)
        }
        let fetches = arguments.count > 2 ? Int(arguments[2]) ?? 10_000 : 10_000
        let timeout = Duration.milliseconds(arguments.count > 3 ? Int(arguments[3]) ?? 200 : 200)
        let phaseLimit = arguments.count > 4 ? Int(arguments[4]).map { Duration.seconds($0) } : nil
        var generator = SystemRandomNumberGenerator()
        let chunks: [(ChunkName, [UInt8])] = (0..<distinctChunks).map { _ in
            var bytes = [UInt8](repeating: 0, count: chunkSize)
            bytes.withUnsafeMutableBytes { raw in
                for offset in stride(from: 0, to: chunkSize, by: 8) { raw.storeBytes(of: generator.next(), toByteOffset: offset, as: UInt64.self) }
            }
            return (ChunkName.of(bytes), bytes)
        }
        for (name, k, m) in [("4-of-5", 4, 1), ("4-of-4", 4, 0), ("single-copy", 1, 0)] {
            var configuration = L2Cache.Configuration(nodes: nodes)
            configuration.dataShards = k
            configuration.parityShards = m
            configuration.timeout = timeout
            let cache = try await L2Cache.start(configuration, chunkSize: chunkSize)
            for (chunk, bytes) in chunks { await cache.put(chunk, bytes) }
            guard cache.statistics.shardWriteFailures == 0 else { throw BenchError("\(name): shard writes failed") }
            let healthy = await measure(cache, chunks, fetches: fetches, limit: phaseLimit)
            print("l2 \(name) healthy \(healthy.line)")
            kill(pid, SIGSTOP)
            let stopped = await measure(cache, chunks, fetches: fetches, limit: phaseLimit)
            kill(pid, SIGCONT)
            print("l2 \(name) one-stopped \(stopped.line)")
            await cache.close()
            // Requests left waiting on the stopped node time out before the next coding starts.
            try await Task.sleep(for: timeout * 2)
        }
    }

    struct Phase {
        var latencies: [Int]
        var misses: Int

        func percentile(_ fraction: Double) -> Int {
            let sorted = latencies.sorted()
            return sorted[min(sorted.count - 1, Int(Double(sorted.count) * fraction))]
        }

        var line: String {
            "fetches=\(latencies.count) misses=\(misses) p50=\(percentile(0.5)) p99=\(percentile(0.99)) p999=\(percentile(0.999))"
        }
    }

    static func measure(_ cache: L2Cache, _ chunks: [(ChunkName, [UInt8])], fetches: Int, limit: Duration?) async -> Phase {
        var phase = Phase(latencies: [], misses: 0)
        phase.latencies.reserveCapacity(fetches)
        let clock = ContinuousClock()
        let began = clock.now
        while phase.latencies.count < fetches, limit.map({ clock.now - began < $0 }) ?? true {
            let (name, _) = chunks[Int.random(in: 0..<chunks.count)]
            let started = clock.now
            let got = await cache.get(name)
            let elapsed = clock.now - started
            phase.latencies.append(Int(elapsed.components.seconds) * 1_000_000 + Int(elapsed.components.attoseconds / 1_000_000_000_000))
            if got == nil { phase.misses += 1 }
        }
        return phase
    }
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
