import Foundation
import Logging
import Synchronization
import ThawAgent
import ThawImage
import ThawLambdaAPI
import ThawMetadata
import ThawPush
import ThawSandbox
import ThawSandboxCore
import ThawStore

/// Runs invocations in warm process sandboxes kept in an `InstancePool`: an idle instance of
/// the function's code answers at once; otherwise a new one starts cold from the image served
/// lazily by the agent's FUSE file (at most `maxConcurrentStarts` cold starts at once on this
/// host). After an answer the instance starts its next handler and goes idle, unless its
/// handler failed; the controller stops it when its keep-alive ends.
struct InstanceInvoker: FunctionInvoker {
    let agent: Agent
    /// Where the agent shows its images as files.
    let directory: String
    let sandbox: ProcessSandbox.Options
    let slots: String
    let maxConcurrentStarts: Int
    let pool: InstancePool<WarmSandbox>
    let metrics: InvocationMetrics
    /// Where kept instances are recorded (the shared metadata).
    let records: InstanceRecords
    /// Lays out again the image of a function whose cold start recorded what it read; nil
    /// leaves images as they are.
    let relayouts: FunctionRelayouts?
    let logger: Logger

    func invoke(_ function: FunctionRecord, settings: FunctionSettings, event: [UInt8]) async throws -> InvocationOutcome {
        let name = function.name.value
        // An instance serves one code and one configuration: a change makes new ones.
        let image = relayouts?.codeIdentity(of: function.manifestID) ?? function.manifestID
        let code = "\(image) r\(settings.revision) \(settings.lastModified.timeIntervalSince1970)"
        let lease: InstancePool<WarmSandbox>.Lease
        do {
            let (granted, stale) = try await pool.acquire(name, code: code)
            lease = granted
            stopInBackground(stale, reason: .stale)
        } catch {
            metrics.refusedOne()
            throw error
        }
        let instance: WarmSandbox
        let start: StartKind
        var cold: ColdStart?
        switch lease {
        case .warm(let warm):
            (instance, start) = (warm, .warm)
        case .cold:
            do {
                let started = try await startInstance(function, settings: settings)
                (instance, cold) = (started.instance, started)
                // Recorded before it is used, so its removal at its stop always comes after.
                await records.add(id: instance.id, function: function.name, state: "warm")
            } catch {
                if (error as? LambdaError)?.status == 429 { metrics.refusedOne() }
                await stop(await pool.release(name, code: code, instance: nil), reason: .budget, confirm: true)
                throw error
            }
            start = .cold
        }
        metrics.invoked(start)
        let outcome = await instance.invoke(event: event)
        if let cold, outcome.failure == nil {
            let saved = try? await agent.finishRecording(function.manifestID)
            // Laid out as pushed, and a record of the blocks read: saved now, by an earlier start
            // (found when the image was opened), or since, when its recording went idle.
            let recorded = saved != nil || cold.hadRecordOfBlocks || cold.served.savedRecord != nil
            if cold.served.image.manifest.header.hot == nil, recorded { relayouts?.request(function) }
        }
        if instance.retired != nil {
            stopInBackground(await pool.releaseRetired(name, instance: instance), reason: .failed)
        } else {
            // Idle at once; its next handler starts while the answer goes back, and the next
            // invocation waits for that start if it comes first.
            let back = await pool.release(name, code: code, instance: instance)
            stopInBackground(back, reason: await pool.isClosed ? .shutdown : .budget)
            if !back.contains(where: { $0 === instance }) {
                Task {
                    guard (try? await instance.prepare()) != nil else { return }
                    // Measured once the new handler has had time to load what it loads before
                    // reading its event: what the instance holds while it waits.
                    try? await Task.sleep(for: .milliseconds(500))
                    instance.measureMemory()
                }
            }
        }
        return InvocationOutcome(response: outcome.response, log: outcome.logTail, failure: outcome.failure?.message,
                                 errorType: Self.errorType(outcome.failure?.kind), start: start)
    }

    /// Lambda's `errorType` for a failed invocation.
    static func errorType(_ kind: SandboxError.Kind?) -> String {
        switch kind {
        case .timedOut: "Sandbox.Timedout"
        case .outOfMemory: "Runtime.OutOfMemory"
        case .responseTooLarge: "Function.ResponseSizeTooLarge"
        default: "Runtime.ExitError"
        }
    }

    func forget(_ function: FunctionName) async {
        stopInBackground(await pool.drain(function.value), reason: .stale)
    }

    /// A new instance, and the image it started from (whether that may be laid out again).
    struct ColdStart {
        var instance: WarmSandbox
        var served: ServedImage
        /// The image already had a record of the blocks a start read when it was opened.
        var hadRecordOfBlocks: Bool { !(served.prefetchRecord?.blocks.isEmpty ?? true) }
    }

    /// A new instance of `function`: its image opened by the agent, a sandbox built on it and
    /// its first handler started.
    func startInstance(_ function: FunctionRecord, settings: FunctionSettings) async throws -> ColdStart {
        let slot: StartSlot
        do {
            slot = try StartSlots.acquire(directory: slots, limit: maxConcurrentStarts)
        } catch let error as SandboxError {
            throw LambdaError.tooManyRequests("Rate Exceeded. \(error.message)")
        }
        defer { slot.release() }
        let (served, spec) = try await Self.open(function, settings: settings, agent: agent)
        var options = sandbox
        options.timeout = .seconds(Int64(settings.timeout))
        if MemoryCgroup.unavailable == nil { options.memoryLimit = settings.memorySize << 20 }
        do {
            let instance = try await WarmSandbox.start(options: options, imageFile: directory + "/" + served.fileName, function: spec)
            return ColdStart(instance: instance, served: served)
        } catch let error as SandboxError where error.kind == .handlerNotFound || error.kind == .invalidFunction {
            throw LambdaError.invalidParameter("function \(function.name) cannot start: \(error.message)")
        } catch {
            throw LambdaError.service("cannot start an instance of \(function.name): \(CommandErrors.describe(error))")
        }
    }

    /// `function`'s image opened by the agent, and the handler it runs: the image's entrypoint,
    /// command, environment and directory as the function's settings override them.
    ///
    /// - Throws: `LambdaError` naming what cannot be served or started.
    static func open(_ function: FunctionRecord, settings: FunctionSettings, agent: Agent) async throws -> (ServedImage, FunctionSpec) {
        let served: ServedImage
        let config: ImageConfiguration
        do {
            served = try await agent.open(function.manifestID, at: ManifestLocation(id: function.manifestID, root: function.root, tenant: function.tenant))
            config = try await agent.imageConfiguration(of: served)
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
        return (served, spec)
    }

    /// Stops instances the pool handed back, in the background.
    func stopInBackground(_ instances: [WarmSandbox], reason: InvocationMetrics.StopReason) {
        guard !instances.isEmpty else { return }
        Task { await stop(instances, reason: reason, confirm: true) }
    }

    /// Stops `instances`, counted under `reason` (nil: already counted); `confirm` when the
    /// pool handed them back and waits to hear they are stopped.
    func stop(_ instances: [WarmSandbox], reason: InvocationMetrics.StopReason?, confirm: Bool = false) async {
        guard !instances.isEmpty else { return }
        if let reason { metrics.stopped(instances.count, reason: reason) }
        await Self.stop(instances, records: records, logger: logger)
        if confirm { await pool.confirmStopped(instances.count) }
    }

    static func stop(_ instances: [WarmSandbox], records: InstanceRecords, logger: Logger) async {
        await withTaskGroup(of: Void.self) { group in
            for instance in instances {
                group.addTask {
                    let leftovers = await instance.stop()
                    if !leftovers.isEmpty { logger.error("teardown of \(instance.id) incomplete: \(leftovers.joined(separator: "; "))") }
                    await records.remove(id: instance.id)
                }
            }
        }
    }
}

/// The instances this agent keeps, recorded in the shared metadata under its id: added when an
/// instance is made, removed when it goes, and all recorded again after another agent removed
/// them with this agent, taking it for silent. A metadata that cannot be written stops nothing.
final class InstanceRecords: Sendable {
    let metadata: (any MetadataStore)?
    let agent: String
    let logger: Logger
    private let entries = Mutex<[String: InstanceRecord]>([:])

    init(metadata: (any MetadataStore)?, agent: String, logger: Logger) {
        self.metadata = metadata
        self.agent = agent
        self.logger = logger
    }

    func add(id: String, function: FunctionName, state: String) async {
        let entry = InstanceRecord(id: id, agent: agent, function: function, state: state, since: Date())
        entries.withLock { $0[id] = entry }
        do {
            try await metadata?.setInstance(entry)
        } catch {
            logger.warning("cannot record instance \(id) of \(function) in the metadata: \(error)")
        }
    }

    func remove(id: String) async {
        _ = entries.withLock { $0.removeValue(forKey: id) }
        try? await metadata?.removeInstance(id: id)
    }

    func recordAgain() async {
        for entry in entries.withLock({ Array($0.values) }) {
            do {
                try await metadata?.setInstance(entry)
            } catch {
                logger.warning("cannot record instance \(entry.id) again: \(error)")
            }
        }
    }
}
