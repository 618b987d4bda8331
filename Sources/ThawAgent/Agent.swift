import Foundation
import Hummingbird
public import Logging
public import ServiceLifecycle
import Synchronization
import ThawCache
public import ThawImage
import ThawFUSE
import ThawL2
public import ThawNBD
import ThawPush
import ThawSeal
import ThawServe
public import ThawStore

/// A worker agent: serves any number of manifests at once as NBD exports and, optionally, as
/// files in a FUSE mount, all through one L1 cache; records what starts read and prefetches it
/// next time; answers a control and Prometheus endpoint.
///
/// `run()` is the whole life: it opens the cache, binds the NBD server, mounts, preloads,
/// serves until cancelled or told to shut down gracefully (SIGTERM under a `ServiceGroup`), and
/// then drains: the NBD server stops taking connections and lets reads in flight finish,
/// recordings are saved, the FUSE mount is removed.
public final class Agent: Service, Sendable {
    public let configuration: AgentConfiguration
    public let origin: AgentOrigin
    public let metrics: AgentMetrics
    public let logger: Logger
    let started = AsyncStream<Agent.Endpoints>.makeStream()
    private let state = Mutex<RunState?>(nil)

    /// Where a running agent can be reached.
    public struct Endpoints: Sendable {
        /// The NBD address with the port actually bound; nil without NBD.
        public var nbd: NBDServerAddress?
        /// The control endpoint with the port actually bound; nil without one.
        public var control: ControlAddress?
        /// The FUSE mount directory; nil without one.
        public var mountDirectory: String?
    }

    struct RunState: Sendable {
        var catalog: ImageCatalog
        var cache: L1Cache
        var l2: L2Cache?
        var endpoints: Endpoints
    }

    public init(configuration: AgentConfiguration, origin: AgentOrigin, metrics: AgentMetrics = AgentMetrics(),
                logger: Logger = Logger(label: "thaw.agent")) {
        self.configuration = configuration
        self.origin = origin
        self.metrics = metrics
        self.logger = logger
    }

    /// Waits until the agent is serving and returns where; nil if it stopped first. One caller
    /// only: the answer is delivered once.
    public func waitUntilRunning() async -> Endpoints? {
        for await endpoints in started.stream { return endpoints }
        return nil
    }

    var catalog: ImageCatalog {
        get throws {
            guard let catalog = state.withLock({ $0?.catalog }) else { throw AgentError(.notServed, "the agent is not running") }
            return catalog
        }
    }

    /// Serves `reference` (a manifest id or unique prefix), opening it if needed: what an NBD
    /// client naming it or `PUT /v1/images/ID` does. `privatelyMapped` is for a snapshot's RAM;
    /// `location`, where the manifest is when the caller knows (`ImageCatalog.open`).
    public func open(_ reference: String, at location: ManifestLocation? = nil, privatelyMapped: Bool = false,
                     withSnapshotRecord: Bool = false) async throws -> ServedImage {
        try await catalog.open(reference, at: location, privatelyMapped: privatelyMapped, withSnapshotRecord: withSnapshotRecord)
    }

    /// How to run the image `served` is: the config stored with its manifest, as read when it
    /// was opened, or from the store again when that read found none.
    ///
    /// - Throws: as `ImageConfigLookup.load` (no config stored, or one that does not open or decode).
    public func imageConfiguration(of served: ServedImage) async throws -> ImageConfiguration {
        let header = served.image.manifest.header
        if let json = served.imageConfigJSON {
            return try ImageConfigLookup.decode(json, of: header, from: origin.store.location)
        }
        return try await ImageConfigLookup.load(for: header, store: origin.store, keys: origin.keys)
    }

    /// Declares the start of `id` over: its recording (if any) is saved next to the manifest.
    ///
    /// - Returns: the chunks the saved record lists; nil when nothing was recorded.
    @discardableResult
    public func finishRecording(_ id: String) async throws -> Int? {
        try await catalog.finishRecording(id)
    }

    /// How this agent names itself in the read marks and uses it reports.
    var reader: String { "agent \(ProcessInfo.processInfo.hostName):\(getpid())" }

    public func run() async throws {
        // Reads allocate and free buffers of up to a chunk each: keep them in the heap.
        MallocTuning.keepLargeBuffers()
        let cache = try await L1Cache.open(configuration.cache)
        var l2: L2Cache?
        if let settings = configuration.l2 {
            l2 = try await L2Cache.start(settings, chunkSize: configuration.l2ChunkSize)
            logger.info("L2 cache", metadata: [
                "nodes": "\(settings.nodes.map { "\($0.host):\($0.port)" }.joined(separator: ","))",
                "shards": "\(settings.dataShards) data + \(settings.parityShards) parity",
            ])
        }
        var fileSystem: FUSEFileSystem?
        var mount: FUSEMount?
        if let directory = configuration.mountDirectory {
            let fs = FUSEFileSystem(logger: logger)
            mount = try await FUSEMount.mount(fs, at: directory, logger: logger)
            fileSystem = fs
        }
        let catalog = ImageCatalog(origin: origin, cache: cache, l2: l2, configuration: configuration, metrics: metrics.serve,
                                   fileSystem: fileSystem, reader: reader, logger: logger)
        do {
            try await serve(catalog: catalog, cache: cache, l2: l2)
        } catch {
            await stop(catalog: catalog, l2: l2, mount: mount)
            throw error
        }
        await stop(catalog: catalog, l2: l2, mount: mount)
        logger.info("agent stopped")
    }

    /// Saves recordings, lets write-backs to L2 land (the next worker's start reads them), and
    /// removes the mount.
    private func stop(catalog: ImageCatalog, l2: L2Cache?, mount: FUSEMount?) async {
        await catalog.finishAll()
        await origin.metadata?.close()
        if let l2 {
            let pending = await l2.flush(timeout: configuration.l2FlushTimeout)
            if pending > 0 { logger.warning("L2 write-backs still pending at exit", metadata: ["chunks": "\(pending)"]) }
            await l2.close()
        }
        await mount?.unmount()
        started.continuation.finish()
    }

    private func serve(catalog: ImageCatalog, cache: L1Cache, l2: L2Cache?) async throws {
        var endpoints = Endpoints(mountDirectory: configuration.mountDirectory)
        let nbd: NBDServer?
        if let address = configuration.nbdAddress {
            nbd = try await NBDServer.bind(address, catalog: catalog, logger: logger)
            endpoints.nbd = nbd?.address
        } else {
            nbd = nil
        }
        for reference in configuration.preload {
            try await catalog.open(reference)
        }
        state.withLock { $0 = RunState(catalog: catalog, cache: cache, l2: l2, endpoints: endpoints) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            if let nbd {
                group.addTask { [configuration] in
                    try await withGracefulShutdownHandler {
                        try await nbd.run()
                    } onGracefulShutdown: {
                        nbd.drain(timeout: configuration.drainTimeout)
                    }
                }
            }
            if let control = configuration.controlAddress {
                let bound = AsyncStream<ControlAddress>.makeStream()
                let application = Application(
                    router: ControlRoutes.router(for: self),
                    configuration: ApplicationConfiguration(address: control.bindAddress, serverName: "thaw-agent"),
                    onServerRunning: { channel in
                        if case .tcp(let host, _) = control, let port = channel.localAddress?.port {
                            bound.continuation.yield(.tcp(host: host, port: port))
                        } else {
                            bound.continuation.yield(control)
                        }
                        bound.continuation.finish()
                    },
                    logger: logger)
                group.addTask { try await application.run() }
                for await address in bound.stream { endpoints.control = address }
            }
            group.addTask { [self] in
                // Saves recordings that went idle; ends with the agent, at once on a graceful
                // shutdown rather than at its next tick.
                let period = min(Duration.seconds(1), configuration.recordIdleTimeout / 4)
                try? await cancelWhenGracefulShutdown {
                    while !Task.isCancelled {
                        try await Task.sleep(for: period)
                        await catalog.finishIdleRecordings()
                        await catalog.reportReads()
                        await catalog.renewUses()
                    }
                }
            }
            state.withLock { $0?.endpoints = endpoints }
            started.continuation.yield(endpoints)
            started.continuation.finish()
            logger.info("agent serving", metadata: [
                "nbd": "\(endpoints.nbd.map { "\($0)" } ?? "off")",
                "control": "\(endpoints.control.map { "\($0)" } ?? "off")",
                "mount": "\(endpoints.mountDirectory ?? "off")",
            ])
            try await group.waitForAll()
        }
    }

    /// The Prometheus text of every figure in the registry, the caches' copied in first.
    public func scrapeMetrics() async -> [UInt8] {
        guard let state = state.withLock({ $0 }) else { return [] }
        return metrics.scrape(cache: state.cache, l2: state.l2?.statistics, imagesServed: await state.catalog.served.count)
    }

    func statistics() async throws -> AgentStatistics {
        guard let state = state.withLock({ $0 }) else { throw AgentError(.notServed, "the agent is not running") }
        return AgentStatistics(served: await state.catalog.served, cache: state.cache, l2: state.l2)
    }

    func answer(for served: ServedImage) -> ControlRoutes.ImageAnswer {
        let endpoints = state.withLock { $0?.endpoints }
        var nbd: String?
        switch endpoints?.nbd {
        case .tcp(let host, let port)?: nbd = (host.contains(":") ? "nbd://[\(host)]:\(port)/" : "nbd://\(host):\(port)/") + served.id
        case .unix(let path)?: nbd = "nbd+unix:///\(served.id)?socket=\(path)"
        case nil: nbd = nil
        }
        return ControlRoutes.ImageAnswer(
            id: served.id, size: served.size, nbd: nbd,
            file: endpoints?.mountDirectory.map { $0 + "/" + served.fileName },
            prefetchChunks: served.prefetchRecord?.chunks.count, recording: served.image.recorder?.isRecording ?? false)
    }
}

extension ControlAddress {
    var bindAddress: BindAddress {
        switch self {
        case .tcp(let host, let port): .hostname(host, port: port)
        case .unix(let path): .unixDomainSocket(path: path)
        }
    }
}
