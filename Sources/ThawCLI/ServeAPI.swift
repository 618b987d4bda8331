import ArgumentParser
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import ThawAgent
import ThawAWS
import ThawImage
import ThawLambdaAPI
import ThawMetadata
import ThawPush
import ThawSandbox
import ThawSandboxCore
import ThawSeal

/// `thaw serve-api`: the AWS Lambda REST API over Thaw's functions, until SIGTERM.
struct ServeAPI: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve-api",
        abstract: "Serve the AWS Lambda API (create, get, list, update, delete and invoke container functions), until SIGTERM.",
        discussion: """
            Requests must be signed with AWS Signature V4 by a key in the credentials file, which is \
            in the AWS CLI's format: every profile's aws_access_key_id and aws_secret_access_key is \
            accepted. When the file does not exist it is made, mode 0600, with one new key pair under \
            [default]; point the AWS CLI at it with AWS_SHARED_CREDENTIALS_FILE. Code.ImageUri is an \
            image (oci:PATH[:TAG], docker-archive:PATH), pushed on create, or a function name or \
            manifest id already pushed. An invocation goes to an idle warm instance of the function (a \
            process sandbox kept with its next handler loaded and waiting), else starts one cold from the \
            lazily loaded image, through one agent in this process; the X-Thaw-Start response header says \
            which. After a function's cold start recorded what it read, its image is laid out again in \
            the background (as thaw relayout does) and the function pointed at the result, unless \
            --no-relayout or --sandbox microvm. An idle instance is kept while the gaps between its function's invocations suggest \
            another will come (the --warm-target percentile of the recent gaps, 0.99 by default, times 1.1, within \
            --keep-alive-min and --keep-alive-max; --keep-alive until a function has 8 gaps), and while \
            idle instances fit --idle-memory-budget. With --sandbox microvm, instances are microVMs: \
            a cold one boots, after which the function is snapshotted into the store in the background \
            (deduplicated: no memory held, restored on demand), and warm ones are VMs restored from the \
            snapshot ahead of the next event; a snapshot is kept for the keep-dedup period (the \
            --dedup-target percentile of the gaps times 1.1, within --keep-dedup-min and --keep-dedup-max; \
            --keep-dedup until 8 gaps) after the last warm VM went, then deleted. \
            GET /metrics (unsigned) gives Prometheus figures. \
            Several serve-api processes sharing one metadata (--metadata postgres://…) and one store form \
            a cluster: each registers under --agent-id with the address in --advertise (default: \
            --listen), an invocation runs on its function's home agent (rendezvous hashing of the name \
            over live agents; forwarded there, signature and all, from whichever agent it reached), and \
            an agent silent for --agent-timeout seconds is out. Kept instances are recorded in the \
            metadata.
            """
    )

    @Option(help: "Where the API listens: HOST:PORT.")
    var listen: String = "127.0.0.1:9001"

    @Option(help: "The region requests must be signed for, and that ARNs name.")
    var apiRegion: String = "us-east-1"

    @Option(help: "The account id ARNs name.")
    var account: String = "000000000000"

    @Option(help: "The credentials file whose keys may sign requests. (default: $THAW_HOME/api-credentials)")
    var credentials: String?

    @Option(help: "Invocations this agent runs at once, all functions together; past it a request gets 429 at once.")
    var maxConcurrentInvocations: Int = 16

    @Option(help: "Instances of one function busy at once; past it a request gets 429 at once.")
    var maxInstancesPerFunction: Int = 4

    @Option(help: "Cold starts this host runs at once; past it a request that needs one gets 429 at once.")
    var maxConcurrentStarts: Int = 8

    @Option(help: "Seconds an idle instance is kept before its function has a pattern of arrivals.")
    var keepAlive: Double = 60

    @Option(help: "Least seconds an idle instance is kept.")
    var keepAliveMin: Double = 1

    @Option(help: "Most seconds an idle instance is kept.")
    var keepAliveMax: Double = 3600

    @Option(help: "The latency target: the share of a function's invocations that should find an instance kept warm for them (the keep-alive is this percentile of the gaps between its invocations, times 1.1).")
    var warmTarget: Double = 0.99

    @Option(help: "Memory idle instances may hold together (e.g. 2G); the longest idle stop first. (default: no budget)")
    var idleMemoryBudget: String?

    @Option(help: "The sandbox instances run in: process (namespaces and a loop mount; warm and cold instances) or microvm (qemu -M microvm; warm, deduplicated and cold instances).")
    var sandbox: String = "process"

    @Option(help: "microvm: seconds a function's snapshot (its deduplicated instance) is kept before the function has a pattern of arrivals.")
    var keepDedup: Double = 600

    @Option(help: "microvm: least seconds a snapshot is kept.")
    var keepDedupMin: Double = 60

    @Option(help: "microvm: most seconds a snapshot is kept; 0 keeps none (instances are then only cold).")
    var keepDedupMax: Double = 86400

    @Option(help: "microvm: the share of a function's invocations that should find at least its snapshot kept (the keep-dedup is this percentile of the gaps between its invocations, times 1.1).")
    var dedupTarget: Double = 0.999

    @OptionGroup var microVM: MicroVMArguments

    @Option(help: "Size of the tmpfs that holds a function's writes, /tmp included.")
    var tmpSize: String = "64M"

    @Option(help: "This agent's id in the cluster. (default: HOSTNAME-PID)")
    var agentID: String?

    @Option(help: "HOST:PORT other agents forward invocations to. (default: --listen)")
    var advertise: String?

    @Option(help: "Seconds without a heartbeat after which an agent is out of the cluster.")
    var agentTimeout: Double = 5

    @Option(help: "Tenant whose key seals the manifests of images pushed on create.")
    var tenant: String = Tenant.default.name

    @Flag(inversion: .prefixedNo, help: "process: after a function's cold start recorded what it read, lay its image out again around that in the background (thaw relayout) and point the function at the result: its later cold starts fetch and preload only that.")
    var relayout = true

    @OptionGroup var agentArguments: AgentArguments
    @OptionGroup var storeArguments: StoreArguments

    func run() async throws {
        try agentArguments.bootstrapLogging()
        let logger = Logger(label: "thaw.api")
        guard let (host, port) = try AddressArgument.parse(listen, option: "--listen") else {
            throw ValidationError("--listen must be HOST:PORT")
        }
        guard maxConcurrentStarts >= 1 else { throw ValidationError("--max-concurrent-starts must be at least 1") }
        guard maxConcurrentInvocations >= 1 else { throw ValidationError("--max-concurrent-invocations must be at least 1") }
        guard maxInstancesPerFunction >= 1 else { throw ValidationError("--max-instances-per-function must be at least 1") }
        guard keepAlive >= 0, keepAliveMin >= 0, keepAliveMax >= keepAliveMin else {
            throw ValidationError("--keep-alive and --keep-alive-min must be 0 or more, and --keep-alive-max at least --keep-alive-min")
        }
        let budget = try idleMemoryBudget.map { UInt64(try ByteCount.parse($0, option: "--idle-memory-budget")) }
        guard warmTarget > 0, warmTarget <= 1 else { throw ValidationError("--warm-target must be above 0 and at most 1") }
        guard sandbox == "process" || sandbox == "microvm" else { throw ValidationError("--sandbox must be process or microvm (got '\(sandbox)')") }
        guard keepDedup >= 0, keepDedupMin >= 0, keepDedupMax >= keepDedupMin, dedupTarget > 0, dedupTarget <= 1 else {
            throw ValidationError("--keep-dedup and --keep-dedup-min must be 0 or more, --keep-dedup-max at least --keep-dedup-min, and --dedup-target above 0 and at most 1")
        }
        guard agentTimeout > 0 else { throw ValidationError("--agent-timeout must be more than 0 seconds") }
        let advertised = advertise ?? listen
        guard let (_, advertisedPort) = try AddressArgument.parse(advertised, option: "--advertise"), advertisedPort > 0 else {
            throw ValidationError("--advertise (or --listen) must be HOST:PORT with a port other agents can reach")
        }
        var hostName = [CChar](repeating: 0, count: 256)
        gethostname(&hostName, hostName.count)
        let agentID = self.agentID ?? "\(String(cString: hostName))-\(getpid())"
        let tenant = try Tenant(tenant)
        let keys = try Self.loadCredentials(credentials ?? ThawHome.path + "/api-credentials")
        let metadata: any MetadataStore
        do {
            // The service pushes what CreateFunction names: a new store is made here.
            _ = try await storeArguments.open(create: true)
            metadata = try await storeArguments.openMetadata(create: true)!
        } catch {
            throw ValidationFailure("cannot open the metadata: \(CommandErrors.describe(error))")
        }

        DeadAgentReclaimer.reclaim(runtime: ThawRuntime.directory, logger: logger)
        var configuration = try agentArguments.configuration()
        configuration.nbdAddress = nil
        configuration.controlAddress = nil
        configuration.mountDirectory = ThawRuntime.directory + "/mounts/api-\(getpid())"
        try FileManager.default.createDirectory(atPath: configuration.mountDirectory!, withIntermediateDirectories: true)
        defer { rmdir(configuration.mountDirectory!) }
        let agent: Agent
        do {
            agent = Agent(configuration: configuration, origin: try await agentArguments.origin(storeArguments), logger: logger)
        } catch {
            throw ValidationFailure(CommandErrors.describe(error))
        }

        let metrics = InvocationMetrics(registry: agent.metrics.registry)
        let records = InstanceRecords(metadata: metadata, agent: agentID, logger: logger)
        let keepWarm = KeepAlivePolicy(initial: keepAlive, minimum: keepAliveMin, maximum: keepAliveMax, percentile: warmTarget)
        let clock: @Sendable () -> Double = { Double(MonotonicTime.now()) / 1e9 }
        let slots = ThawRuntime.directory + "/starts"
        let invoker: any FunctionInvoker
        let controller: any Service
        var relayouts: FunctionRelayouts?
        if sandbox == "microvm" {
            var vm = try microVM.options(tmpSize: try ByteCount.parse(tmpSize, option: "--tmp-size"))
            vm.stateDirectory = ThawRuntime.directory + "/vms"
            let pool = InstancePool<RestoredMicroVM>(
                limits: .init(admission: maxConcurrentInvocations, perFunction: maxInstancesPerFunction, idleMemoryBudget: budget),
                policy: keepWarm, clock: clock, memory: { $0.memoryHeld }, usable: { $0.isRunning })
            let deduplicated = DeduplicatedInstances<KeptSnapshot>(
                policy: KeepAlivePolicy(initial: keepDedup, minimum: keepDedupMin, maximum: keepDedupMax, percentile: dedupTarget), clock: clock)
            let microVMs = MicroVMInvoker(agent: agent, directory: configuration.mountDirectory!, vm: vm, slots: slots,
                                          maxConcurrentStarts: maxConcurrentStarts, pool: pool, deduplicated: deduplicated,
                                          metrics: metrics, records: records, logger: logger)
            invoker = microVMs
            controller = InstanceController(pool: pool, metrics: metrics,
                                            stop: { await MicroVMInvoker.stop($0, records: records) },
                                            tick: { await microVMs.tick(shuttingDown: $0) })
        } else {
            if let reason = MemoryCgroup.unavailable {
                logger.warning("MemorySize is not enforced on this host: \(reason)")
            }
            var options = ProcessSandbox.Options(initCommand: [try ThawRuntime.executable, SandboxInitCommand.name])
            options.tmpSize = try ByteCount.parse(tmpSize, option: "--tmp-size")
            options.stateDirectory = ThawRuntime.directory + "/sandboxes"
            let pool = InstancePool<WarmSandbox>(
                limits: .init(admission: maxConcurrentInvocations, perFunction: maxInstancesPerFunction, idleMemoryBudget: budget),
                policy: keepWarm, clock: clock, memory: { $0.memoryHeld }, usable: { $0.retired == nil })
            relayouts = relayout ? FunctionRelayouts(storeArguments: storeArguments, logger: logger) : nil
            invoker = InstanceInvoker(agent: agent, directory: configuration.mountDirectory!, sandbox: options, slots: slots,
                                      maxConcurrentStarts: maxConcurrentStarts, pool: pool, metrics: metrics, records: records,
                                      relayouts: relayouts, logger: logger)
            controller = InstanceController(pool: pool, metrics: metrics) { instances in
                await InstanceInvoker.stop(instances, records: records, logger: logger)
            }
        }
        let cluster = AgentCluster(id: agentID, address: advertised, metadata: metadata,
                                   timeout: .milliseconds(Int64(agentTimeout * 1000)), logger: logger,
                                   onRejoin: { await records.recordAgain() })
        let code = PushingCodeSource(store: storeArguments, tenant: tenant.name)
        let service = LambdaService(metadata: metadata, code: code, invoker: invoker, tenant: tenant, region: apiRegion,
                                    account: account)
        let events = EventInvocations { message in logger.error("\(message)") }
        let router = LambdaRoutes.router(service: service, verifier: SignatureV4Verifier(secrets: keys, region: apiRegion, service: "lambda"),
                                         events: events, metrics: { await agent.scrapeMetrics() }, cluster: cluster)
        let application = Application(
            router: router,
            configuration: ApplicationConfiguration(address: .hostname(host, port: port), serverName: "thaw-api"),
            onServerRunning: { channel in
                FileHandle.standardOutput.write(Data("thaw serve-api listening on http://\(host):\(channel.localAddress?.port ?? port)\n".utf8))
            },
            logger: logger)
        let group = ServiceGroup(configuration: .init(
            // Shut down last to first: queued events finish, then the server, then idle
            // instances stop while the agent still serves their images.
            // The cluster leaves the metadata after the server stops taking requests.
            // Relayouts stop first: one under way is cancelled, and those still asked for are
            // dropped (a function not laid out is laid out after its next cold start).
            services: [.init(service: agent), .init(service: controller), .init(service: cluster), .init(service: application),
                       .init(service: events)] + (relayouts.map { [.init(service: $0)] } ?? []),
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        do {
            try await group.run()
        } catch {
            await metadata.close()
            throw ValidationFailure(CommandErrors.describe(error))
        }
        await metadata.close()
    }

    /// Secret keys by access key id, from an AWS-style credentials file; makes the file with
    /// one new key pair when it is missing.
    static func loadCredentials(_ path: String) throws -> [String: String] {
        if !FileManager.default.fileExists(atPath: path) {
            let id = "AKIA" + Self.random(alphabet: "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", count: 16)
            let secret = Self.random(alphabet: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", count: 40)
            let text = "[default]\naws_access_key_id = \(id)\naws_secret_access_key = \(secret)\n"
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]) else {
                throw ValidationFailure("cannot create the API credentials file \(path)")
            }
            FileHandle.standardError.write(Data("made API credentials in \(path) (access key id \(id))\n".utf8))
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ValidationFailure("cannot read the API credentials file \(path)")
        }
        let file: AWSProfileFile
        do {
            file = try AWSProfileFile(parsing: String(decoding: data, as: UTF8.self), kind: .credentials, path: path)
        } catch {
            throw ValidationFailure("the API credentials file \(path) does not parse: \(error)")
        }
        var keys: [String: String] = [:]
        for profile in file.profiles.values {
            guard let id = profile.setting("aws_access_key_id")?.value, let secret = profile.setting("aws_secret_access_key")?.value,
                  !id.isEmpty, !secret.isEmpty else { continue }
            keys[id] = secret
        }
        guard !keys.isEmpty else {
            throw ValidationFailure("the API credentials file \(path) has no profile with aws_access_key_id and aws_secret_access_key")
        }
        return keys
    }

    static func random(alphabet: String, count: Int) -> String {
        let letters = Array(alphabet)
        var generator = SystemRandomNumberGenerator()
        return String((0..<count).map { _ in letters[Int(generator.next(upperBound: UInt64(letters.count)))] })
    }
}

/// `Code.ImageUri` to a pushed manifest: a function name or a manifest id already in the
/// metadata is looked up; anything else is an image, pushed as `thaw push` would.
struct PushingCodeSource: FunctionCodeSource {
    let store: StoreArguments
    let tenant: String

    func resolve(imageURI: String) async throws -> ResolvedCode {
        let known: ResolvedCode? = try await store.withMetadata(create: true) { metadata in
            guard let metadata else { return nil }
            if let name = try? FunctionName(imageURI), let function = try await metadata.function(named: name) {
                let manifest = try await metadata.manifests(in: function.root).first { $0.id == function.manifestID }
                return ResolvedCode(manifestID: function.manifestID, root: function.root, imageSize: manifest?.imageSize ?? 0)
            }
            if ManifestReference.looksLikeManifest(imageURI) {
                let matches = try await metadata.manifests(in: nil).filter { $0.id.hasPrefix(imageURI.lowercased()) }
                guard Set(matches.map(\.id)).count == 1, let match = matches.first else {
                    throw LambdaError.invalidParameter(matches.isEmpty ? "no manifest \(imageURI) has been pushed"
                                                                       : "manifest prefix \(imageURI) is ambiguous")
                }
                return ResolvedCode(manifestID: match.id, root: match.root, imageSize: match.imageSize)
            }
            return nil
        }
        if let known { return known }
        do {
            let report = try await PushCommand.run(image: imageURI, store: store, tenant: tenant, platform: "linux/amd64",
                                                   chunkSize: 512 * 1024, concurrency: 8)
            return ResolvedCode(manifestID: report.manifestID, root: report.header.root, imageSize: report.header.imageSize)
        } catch {
            throw LambdaError.invalidParameter("cannot use image \(imageURI): \(CommandErrors.describe(error))")
        }
    }
}
