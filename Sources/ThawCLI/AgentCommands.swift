import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import ThawAgent
import ThawNBD

/// `thaw agent`: the long-running worker service.
struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Serve manifests as NBD exports (and FUSE files) through one cache, until SIGTERM.",
        discussion: """
            An NBD client names a manifest id as its export; the agent opens it on first request. \
            The control endpoint serves GET /metrics (Prometheus), GET /v1/stats, PUT /v1/images/ID, \
            POST /v1/images/ID/started and DELETE /v1/images/ID. The first start of a manifest is \
            recorded; later starts prefetch what it read. SIGTERM or SIGINT drains and exits.
            """
    )

    @Argument(help: "Manifests to serve from the start (ids or unique prefixes); others open on request.")
    var manifests: [String] = []

    @Option(help: "Where NBD listens: HOST:PORT, PORT, unix:PATH, or none.")
    var nbd: String = "127.0.0.1:10809"

    @Option(help: "The control and metrics endpoint: HOST:PORT, PORT, unix:PATH, or none.")
    var control: String = "127.0.0.1:7480"

    @Option(help: "Also show every served image as DIR/ID.ext4 through FUSE.")
    var mount: String?

    @OptionGroup var agentArguments: AgentArguments
    @OptionGroup var storeArguments: StoreArguments

    func run() async throws {
        var configuration = try agentArguments.configuration()
        configuration.nbdAddress = nbd == "none" ? nil : try AddressArgument.nbd(nbd)
        configuration.controlAddress = try AddressArgument.control(control)
        configuration.mountDirectory = mount
        configuration.preload = manifests
        try await AgentRunner.run(configuration, agentArguments, storeArguments) { endpoints in
            "thaw agent serving: nbd \(endpoints.nbd.map { "\($0)" } ?? "off"), control \(endpoints.control.map { "\($0)" } ?? "off")\(endpoints.mountDirectory.map { ", files in \($0)" } ?? "")"
        }
    }
}

/// `thaw serve MANIFEST`: one image over NBD.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve one manifest as an NBD export (also the default export), until SIGTERM.")

    @Argument(help: "Manifest id, or a unique prefix of at least 8 hex digits.")
    var manifest: String

    @Option(help: "Where NBD listens: HOST:PORT, PORT or unix:PATH.")
    var nbd: String = "127.0.0.1:10809"

    @Option(help: "The control and metrics endpoint: HOST:PORT, PORT, unix:PATH, or none.")
    var control: String = "none"

    @OptionGroup var agentArguments: AgentArguments
    @OptionGroup var storeArguments: StoreArguments

    func run() async throws {
        var configuration = try agentArguments.configuration()
        configuration.nbdAddress = try AddressArgument.nbd(nbd)
        configuration.controlAddress = try AddressArgument.control(control)
        configuration.preload = [manifest]
        try await AgentRunner.run(configuration, agentArguments, storeArguments) { endpoints in
            "serving \(manifest) at \(endpoints.nbd.map { "\($0)" } ?? "?")"
        }
    }
}

/// `thaw mount MANIFEST DIR`: one image as a FUSE file.
struct Mount: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show one manifest as the read-only file DIR/ID.ext4 through FUSE, until SIGTERM.",
        discussion: "The file can be attached with losetup -r and mounted as ext4, or opened by a VMM. SIGTERM or SIGINT unmounts.")

    @Argument(help: "Manifest id, or a unique prefix of at least 8 hex digits.")
    var manifest: String

    @Argument(help: "An existing directory to mount on.")
    var directory: String

    @Option(help: "The control and metrics endpoint: HOST:PORT, PORT, unix:PATH, or none.")
    var control: String = "none"

    @OptionGroup var agentArguments: AgentArguments
    @OptionGroup var storeArguments: StoreArguments

    func run() async throws {
        var configuration = try agentArguments.configuration()
        configuration.nbdAddress = nil
        configuration.controlAddress = try AddressArgument.control(control)
        configuration.mountDirectory = URL(fileURLWithPath: directory).standardizedFileURL.path
        configuration.preload = [manifest]
        try await AgentRunner.run(configuration, agentArguments, storeArguments) { endpoints in
            "mounted \(manifest) in \(endpoints.mountDirectory ?? directory)"
        }
    }
}

/// Runs an agent under a service group that turns SIGTERM and SIGINT into a graceful shutdown.
enum AgentRunner {
    static func run(_ configuration: AgentConfiguration, _ agentArguments: AgentArguments, _ storeArguments: StoreArguments,
                    announce: @escaping @Sendable (Agent.Endpoints) -> String) async throws {
        try agentArguments.bootstrapLogging()
        let logger = Logger(label: "thaw.agent")
        let agent: Agent
        do {
            agent = Agent(configuration: configuration, origin: try await agentArguments.origin(storeArguments), logger: logger)
        } catch {
            throw ValidationFailure(CommandErrors.describe(error))
        }
        let group = ServiceGroup(configuration: .init(services: [agent], gracefulShutdownSignals: [.sigterm, .sigint],
                                                      logger: logger))
        let announcer = Task {
            if let endpoints = await agent.waitUntilRunning() {
                // Unbuffered: whoever started the agent may be waiting for this line.
                FileHandle.standardOutput.write(Data((announce(endpoints) + "\n").utf8))
            }
        }
        defer { announcer.cancel() }
        do {
            try await group.run()
        } catch {
            throw ValidationFailure(CommandErrors.describe(error))
        }
    }
}
