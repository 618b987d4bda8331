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
            manifest id already pushed. Each invocation starts the function cold in a process sandbox \
            from the lazily loaded image, through one agent in this process.
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

    @Option(help: "Invocations this host runs at once; past it a request gets 429 at once.")
    var maxConcurrentStarts: Int = 8

    @Option(help: "Size of the tmpfs that holds a function's writes, /tmp included.")
    var tmpSize: String = "64M"

    @Option(help: "Tenant whose key seals the manifests of images pushed on create.")
    var tenant: String = Tenant.default.name

    @OptionGroup var agentArguments: AgentArguments
    @OptionGroup var storeArguments: StoreArguments

    func run() async throws {
        try agentArguments.bootstrapLogging()
        let logger = Logger(label: "thaw.api")
        guard let (host, port) = try AddressArgument.parse(listen, option: "--listen") else {
            throw ValidationError("--listen must be HOST:PORT")
        }
        guard maxConcurrentStarts >= 1 else { throw ValidationError("--max-concurrent-starts must be at least 1") }
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

        var sandbox = ProcessSandbox.Options(initCommand: [try ThawRuntime.executable, SandboxInitCommand.name])
        sandbox.tmpSize = try ByteCount.parse(tmpSize, option: "--tmp-size")
        sandbox.stateDirectory = ThawRuntime.directory + "/sandboxes"
        let invoker = SandboxInvoker(agent: agent, directory: configuration.mountDirectory!, sandbox: sandbox, slots: ThawRuntime.directory + "/starts",
                                     maxConcurrentStarts: maxConcurrentStarts, logger: logger)
        let code = PushingCodeSource(store: storeArguments, tenant: tenant.name)
        let service = LambdaService(metadata: metadata, code: code, invoker: invoker, tenant: tenant, region: apiRegion,
                                    account: account)
        let events = EventInvocations { message in logger.error("\(message)") }
        let router = LambdaRoutes.router(service: service, verifier: SignatureV4Verifier(secrets: keys, region: apiRegion, service: "lambda"),
                                         events: events)
        let application = Application(
            router: router,
            configuration: ApplicationConfiguration(address: .hostname(host, port: port), serverName: "thaw-api"),
            onServerRunning: { channel in
                FileHandle.standardOutput.write(Data("thaw serve-api listening on http://\(host):\(channel.localAddress?.port ?? port)\n".utf8))
            },
            logger: logger)
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: agent), .init(service: application), .init(service: events)],
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

/// Runs each invocation cold in a process sandbox, from the function's image served lazily
/// by the agent's FUSE file; at most `maxConcurrentStarts` at once on this host.
struct SandboxInvoker: FunctionInvoker {
    let agent: Agent
    /// Where the agent shows its images as files.
    let directory: String
    let sandbox: ProcessSandbox.Options
    let slots: String
    let maxConcurrentStarts: Int
    let logger: Logger

    func invoke(_ function: FunctionRecord, settings: FunctionSettings, event: [UInt8]) async throws -> InvocationOutcome {
        let slot: StartSlot
        do {
            slot = try StartSlots.acquire(directory: slots, limit: maxConcurrentStarts)
        } catch let error as SandboxError {
            throw LambdaError.tooManyRequests("Rate Exceeded. \(error.message)")
        }
        defer { slot.release() }
        let served: ServedImage
        let config: ImageConfiguration
        do {
            served = try await agent.open(function.manifestID)
            config = try await ImageConfigLookup.load(for: served.image.manifest.header, store: agent.origin.store, keys: agent.origin.keys)
        } catch {
            throw LambdaError.service("cannot serve the image of \(function.name): \(CommandErrors.describe(error))")
        }
        var spec: FunctionSpec
        do {
            spec = try FunctionSpec(execution: config.config, image: function.manifestID, command: settings.command ?? [],
                                    entrypoint: settings.entryPoint,
                                    environment: settings.environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" })
        } catch let error as SandboxError {
            throw LambdaError.invalidParameter(error.message)
        }
        if let directory = settings.workingDirectory { spec.workingDirectory = directory }
        var options = sandbox
        options.timeout = .seconds(Int64(settings.timeout))
        let outcome = try await ProcessSandbox(options: options).run(imageFile: directory + "/" + served.fileName, function: spec,
                                                                     event: event, log: { _ in })
        if outcome.failure == nil { _ = try? await agent.finishRecording(served.id) }
        if !outcome.leftovers.isEmpty {
            logger.error("teardown incomplete after invoking \(function.name): \(outcome.leftovers.joined(separator: "; "))")
        }
        return InvocationOutcome(response: outcome.response, log: outcome.logTail, failure: outcome.failure?.message, start: .cold)
    }
}
