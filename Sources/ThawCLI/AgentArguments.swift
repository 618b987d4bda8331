import ArgumentParser
import Foundation
import Logging
import ThawAgent
import ThawCache
import ThawL2
import ThawNBD
import ThawSandbox
import ThawSandboxCore
import ThawServe
import ThawStore

/// The options `thaw agent`, `thaw serve` and `thaw mount` share: the cache, the read path,
/// recording and prefetch.
struct AgentArguments: ParsableArguments {
    @Option(help: "Bytes of chunks the L1 memory tier holds (K, M, G suffixes).")
    var memoryCache: String = "1G"

    @Option(help: "Bytes of chunks the L1 disk tier holds; 0 turns it off.")
    var diskCache: String = "4G"

    @Option(help: "Where the L1 disk tier keeps chunk files. (default: $THAW_HOME/cache)")
    var cacheDir: String?

    @Option(help: "The L2 cache's memcached nodes, host:port,... (at least data + parity shards of them); none runs without L2.")
    var l2: String?

    @Option(help: "Data shards (k) of each chunk in L2: any k of the k + m shards rebuild it.")
    var l2DataShards: Int = 4

    @Option(help: "Parity shards (m) of each chunk in L2: the nodes that may be lost or slow without a miss.")
    var l2ParityShards: Int = 1

    @Option(help: "Milliseconds an L2 node may take to answer before its shard counts as missing.")
    var l2Timeout: Double = 200

    @Option(help: "Chunks read ahead of a sequential stream (0 turns read-ahead off).")
    var readAhead: Int = 4

    @Option(help: "Origin fetches in flight at once per image.")
    var originFetches: Int = 32

    @Option(help: "Seconds a read may wait for a chunk before it fails with an I/O error.")
    var deadline: Double = 30

    @Option(help: "Seconds without a read after which a start's recording ends and is saved.")
    var recordIdle: Double = 10

    @Flag(help: "Do not record starts.")
    var noRecord = false

    @Flag(help: "Do not prefetch recorded starts.")
    var noPrefetch = false

    @Option(help: "Chunks one image's prefetch fetches at once (at most half the origin fetches).")
    var prefetchConcurrency: Int = 16

    @Option(help: "Chunks the prefetch of a memory snapshot's RAM fetches at once (its origin fetches are raised to twice this).")
    var memoryPrefetchConcurrency: Int = 64

    @Option(help: "Seconds SIGTERM lets reads in flight finish before connections are cut.")
    var drainTimeout: Double = 10

    @Option(help: "Milliseconds added before every origin read, to emulate a remote object store (benchmarks).")
    var originLatency: Double = 0

    @Option(help: "Log level: trace, debug, info, notice, warning, error or critical. (default: info; warning for thaw run)")
    var logLevel: String?

    func configuration() throws -> AgentConfiguration {
        var configuration = AgentConfiguration()
        let memory = try ByteCount.parse(memoryCache, option: "--memory-cache")
        let disk = try ByteCount.parse(diskCache, option: "--disk-cache")
        configuration.cache = L1Configuration(memoryCapacity: memory, diskCapacity: disk,
                                              diskDirectory: disk > 0 ? (cacheDir ?? ThawHome.path + "/cache") : nil)
        guard readAhead >= 0, originFetches >= 1, deadline > 0, recordIdle > 0, prefetchConcurrency >= 1, memoryPrefetchConcurrency >= 1, originLatency >= 0,
              drainTimeout >= 0 else {
            throw ValidationError("--read-ahead must be >= 0, --origin-fetches, --prefetch-concurrency and --memory-prefetch-concurrency >= 1, --deadline and --record-idle > 0, --origin-latency and --drain-timeout >= 0")
        }
        configuration.drainTimeout = .milliseconds(Int64(drainTimeout * 1000))
        configuration.image = LazyImageConfiguration(readAhead: readAhead, maximumOriginFetches: originFetches,
                                                     deadline: .milliseconds(Int64(deadline * 1000)))
        configuration.recordIdleTimeout = .milliseconds(Int64(recordIdle * 1000))
        configuration.recording = !noRecord
        configuration.prefetching = !noPrefetch
        configuration.prefetchConcurrency = prefetchConcurrency
        configuration.memoryPrefetchConcurrency = memoryPrefetchConcurrency
        configuration.l2 = try l2Configuration()
        return configuration
    }

    /// The L2 settings from `--l2` and its companions; nil without `--l2`.
    func l2Configuration() throws -> L2Cache.Configuration? {
        guard let l2 else { return nil }
        var nodes: [(host: String, port: Int)] = []
        for entry in l2.split(separator: ",", omittingEmptySubsequences: false) {
            guard let colon = entry.lastIndex(of: ":"), let port = Int(entry[entry.index(after: colon)...]),
                  (1...65535).contains(port), colon > entry.startIndex else {
                throw ValidationError("--l2 takes host:port entries separated by commas; '\(entry)' is not one")
            }
            var host = String(entry[..<colon])
            if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            nodes.append((host, port))
        }
        guard l2DataShards >= 1, l2ParityShards >= 0, l2DataShards + l2ParityShards <= 255, l2Timeout > 0 else {
            throw ValidationError("--l2-data-shards must be >= 1, --l2-parity-shards >= 0 (at most 255 in all), --l2-timeout > 0")
        }
        var configuration = L2Cache.Configuration(nodes: nodes)
        configuration.dataShards = l2DataShards
        configuration.parityShards = l2ParityShards
        configuration.timeout = .microseconds(Int64(l2Timeout * 1000))
        return configuration
    }

    func origin(_ storeArguments: StoreArguments) async throws -> AgentOrigin {
        var store = try await storeArguments.open(create: false)
        if originLatency > 0 { store = LatencyStore(store, delay: .microseconds(Int64(originLatency * 1000))) }
        let metadata = try await storeArguments.openMetadata(create: false)
        return AgentOrigin(store: store, roots: try await storeArguments.readRoots(metadata), keys: storeArguments.keyProvider,
                           metadata: metadata)
    }

    func bootstrapLogging(default defaultLevel: Logger.Level = .info) throws {
        guard let level = logLevel.map({ Logger.Level(rawValue: $0) }) ?? defaultLevel else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical (got '\(logLevel ?? "")')")
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}

/// Sizes on the command line: bytes, or a number with K, M, G or T (powers of 1024).
enum ByteCount {
    static func parse(_ text: String, option: String) throws -> Int {
        let units: [Character: Int] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
        var digits = Substring(text.uppercased())
        if digits.hasSuffix("IB") { digits = digits.dropLast(2) } else if digits.hasSuffix("B") { digits = digits.dropLast() }
        var multiplier = 1
        if let last = digits.last, let unit = units[last] {
            multiplier = unit
            digits = digits.dropLast()
        }
        guard let value = Double(digits), value >= 0, (value * Double(multiplier)).isFinite,
              value * Double(multiplier) < Double(Int.max) else {
            throw ValidationError("\(option) must be a size such as 512M or 4G (got '\(text)')")
        }
        return Int(value * Double(multiplier))
    }
}

/// Addresses on the command line.
enum AddressArgument {
    /// `HOST:PORT`, `PORT`, `[V6]:PORT`, or a Unix socket as `unix:PATH` or an absolute path.
    static func parse(_ text: String, option: String) throws -> (host: String, port: Int)? {
        if text.hasPrefix("/") || text.hasPrefix("unix:") { return nil }
        var host = "127.0.0.1"
        var portText = Substring(text)
        if let colon = text.lastIndex(of: ":") {
            host = String(text[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
            portText = text[text.index(after: colon)...]
        }
        guard let port = Int(portText), (0...65535).contains(port), !host.isEmpty else {
            throw ValidationError("\(option) must be HOST:PORT, PORT, unix:PATH or an absolute socket path (got '\(text)')")
        }
        return (host, port)
    }

    static func socketPath(_ text: String) -> String { text.hasPrefix("unix:") ? String(text.dropFirst(5)) : text }

    static func nbd(_ text: String) throws -> NBDServerAddress {
        if let (host, port) = try parse(text, option: "--nbd") { return .tcp(host: host, port: port) }
        return .unix(path: socketPath(text))
    }

    static func control(_ text: String) throws -> ControlAddress? {
        if text == "none" { return nil }
        if let (host, port) = try parse(text, option: "--control") { return .tcp(host: host, port: port) }
        return .unix(path: socketPath(text))
    }
}

/// The microVM's kernel, guest init and accelerator, for `thaw run`, `thaw snapshot` and
/// `thaw serve-api --sandbox microvm`.
struct MicroVMArguments: ParsableArguments {
    @Option(help: "The microVM's accelerator: auto (KVM where it can run guests, else TCG), kvm or tcg.")
    var accel: String = "auto"

    @Option(help: "The microVM's kernel. (default: the newest /boot/vmlinuz-*)")
    var kernel: String?

    @Option(help: "The static guest init for the microVM's initramfs. (default: $THAW_HOME/vm/thaw-guest, from scripts/build-guest.sh)")
    var guest: String?

    /// The microVM's settings: its kernel and initramfs (built on first use) and accelerator,
    /// with `tmpSize` for the function's writes; the rest at their defaults.
    func options(tmpSize: Int) throws -> MicroVMSandbox.Options {
        let assets: MicroVMAssets
        do {
            assets = try MicroVMAssets.prepare(kernel: kernel, guest: guest ?? ThawHome.path + "/vm/thaw-guest",
                                               directory: ThawHome.path + "/vm")
        } catch let error as SandboxError {
            throw ValidationFailure(error.message)
        }
        let accelerator: MicroVMSandbox.Accelerator
        switch accel {
        case "auto":
            let (chosen, note) = MicroVMSandbox.chooseAccelerator()
            if let note { FileHandle.standardError.write(Data("note: \(note)\n".utf8)) }
            accelerator = chosen
        default:
            guard let chosen = MicroVMSandbox.Accelerator(rawValue: accel) else {
                throw ValidationFailure("--accel must be auto, kvm or tcg (got '\(accel)')")
            }
            accelerator = chosen
        }
        var options = MicroVMSandbox.Options(assets: assets, accelerator: accelerator)
        options.tmpSize = tmpSize
        options.stateDirectory = ThawRuntime.directory + "/vms"
        return options
    }
}
