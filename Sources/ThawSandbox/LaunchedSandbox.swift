import Foundation
import Glibc
import Synchronization
import ThawSandboxCore

/// A process sandbox whose namespaces and init are already starting while the host still
/// fetches the image: the init waits for its plan (the image file, the function) on a pipe.
///
/// Why: the init is the Thaw executable, and starting it (loading its libraries, the Swift
/// runtime) takes some 20 ms on an idle host and several times that while a prefetch keeps
/// both cores busy with chunks. Launched as soon as the agent's mount exists, that start
/// overlaps the manifest's round trip instead of coming after it, and the image is mounted as
/// soon as its first chunks are in.
///
/// `run` hands over the plan and runs the function once; `abandon` closes the plan's pipe
/// unwritten, on which the init exits without touching anything, and removes the work
/// directory and cgroup. One of the two must be called; `abandon` after `run` does nothing.
public final class LaunchedSandbox: Sendable {
    /// The pipes between host and init: both ends until `launch` closes the child's.
    struct Pipes {
        let input: PipeEnds, output: PipeEnds, errors: PipeEnds, reports: PipeEnds, plan: PipeEnds

        init() throws {
            var made: [PipeEnds] = []
            do {
                for _ in 0..<5 { made.append(try PipeEnds()) }
            } catch {
                made.forEach { $0.closeBoth() }
                throw error
            }
            (input, output, errors, reports, plan) = (made[0], made[1], made[2], made[3], made[4])
        }

        /// Standard input, output and error, the report pipe (descriptor 3) and the plan's.
        var childDescriptors: [Int32: Int32] {
            [0: input.read, 1: output.write, 2: errors.write, 3: reports.write, SandboxPlan.descriptor: plan.read]
        }

        func closeChildEnds() {
            for descriptor in [input.read, output.write, errors.write, reports.write, plan.read] { close(descriptor) }
        }

        func closeHostEnds() {
            for descriptor in [input.write, output.read, errors.read, reports.read, plan.write] { close(descriptor) }
        }

        func closeAll() {
            closeChildEnds()
            closeHostEnds()
        }
    }

    let options: ProcessSandbox.Options
    let workDirectory: String
    let cgroup: MemoryCgroup?
    let child: ChildProcess
    let pipes: Pipes
    /// Set by the first of `run` and `abandon`.
    private let claimed = Mutex(false)

    init(options: ProcessSandbox.Options, workDirectory: String, cgroup: MemoryCgroup?, child: ChildProcess, pipes: Pipes) {
        self.options = options
        self.workDirectory = workDirectory
        self.cgroup = cgroup
        self.child = child
        self.pipes = pipes
    }

    /// True for the first caller of `run` or `abandon`.
    private func claim() -> Bool {
        claimed.withLock { done in
            defer { done = true }
            return !done
        }
    }

    /// Ends the launched init without a plan and removes what `launch` made; does nothing once
    /// `run` or `abandon` has been called. The init is killed rather than left to notice the
    /// closed pipe: it has mounted nothing yet, and its start would only take CPU from what
    /// the host does instead.
    public func abandon() async {
        guard claim() else { return }
        endWithoutPlan()
        _ = await child.wait()
        removeDirectories()
    }

    /// A launched sandbox nobody ran or abandoned (a caller's mistake) is killed and removed
    /// here; its process is reaped when this one ends.
    deinit {
        guard claim() else { return }
        endWithoutPlan()
        removeDirectories()
    }

    /// Closes the host's ends, the plan's unwritten, and kills the init.
    private func endWithoutPlan() {
        pipes.closeHostEnds()
        child.signal(SIGKILL)
    }

    /// Removes the work directory and cgroup `launch` made, once the init is gone.
    private func removeDirectories() {
        cgroup?.remove()
        rmdir(workDirectory)
    }

    /// Runs `function` from `imageFile` with `event` on its standard input, once (see
    /// `ProcessSandbox.run`).
    public func run(imageFile: String, function: FunctionSpec, event: [UInt8], preload: [PreloadRun]? = nil,
                    log: @escaping @Sendable ([UInt8]) -> Void = { _ in }) async throws -> SandboxOutcome {
        guard claim() else { throw SandboxError(.setupFailed, "this launched sandbox has already run or was abandoned") }
        defer { removeDirectories() }
        let plan = SandboxPlan(imageFile: imageFile, workDirectory: workDirectory, tmpSize: options.tmpSize,
                               network: options.network, deviceReadAheadKiB: options.deviceReadAheadKiB, function: function,
                               memoryCgroup: cgroup?.path, preload: preload)
        let planText: [UInt8]
        do {
            planText = try plan.encodedLine()
        } catch {
            endWithoutPlan()
            _ = await child.wait()
            throw SandboxError(.setupFailed, "cannot encode the sandbox's plan: \(error)")
        }

        // unshare passes SIGKILL on to the init (--kill-child), and the death of a PID
        // namespace's init kills everything in it.
        let stopper = SandboxStopper(child: child)
        let limit = options.responseLimit
        let tail = LogTail(limit: options.logTailLimit)
        let timer = stopper.armTimeout(options.timeout, killing: "the sandbox")
        defer { timer.cancel() }

        let (child, pipes) = (self.child, self.pipes)
        let (response, termination, reportLines) = await withTaskCancellationHandler {
            async let planned: Void = PipeEnds.feed(pipes.plan.write, planText)
            async let fed: Void = PipeEnds.feed(pipes.input.write, event)
            async let stdout = PipeEnds.drain(pipes.output.read, limit: limit) {
                stopper.stop(SandboxError(.responseTooLarge, "the handler's response exceeds the limit of \(limit) bytes; the sandbox was killed"))
            }
            async let stderr = PipeEnds.drain(pipes.errors.read, limit: 0, chunk: { piece in
                log(piece)
                tail.append(piece)
            })
            async let reported = PipeEnds.drain(pipes.reports.read, limit: 1 << 20)
            let termination = await child.wait()
            _ = await (planned, fed, stderr)
            return (await stdout.bytes, termination, await reported.bytes)
        } onCancel: {
            stopper.stop(SandboxError(.cancelled, "the start was interrupted; the sandbox was killed"))
        }
        let finished = MonotonicTime.now()

        var outcome = SandboxOutcome(response: response, logTail: tail.bytes, termination: termination,
                                     finished: finished, leftovers: [])
        var setupFailure: SandboxError?
        for line in reportLines.split(separator: 0x0a) {
            guard let report = try? JSONDecoder().decode(SandboxReport.self, from: Data(line)) else { continue }
            switch report.stage {
            case .deviceAttached:
                outcome.deviceAttached = report.time
                outcome.loopDevice = report.detail
            case .rootMounted:
                outcome.rootMounted = report.time
                outcome.preloaded = report.detail
            case .handlerStarted: outcome.handlerStarted = report.time
            case .handlerEnded: break
            case .failed:
                setupFailure = report.setupError
            }
        }
        if let reason = stopper.reason {
            outcome.failure = reason
        } else if let setupFailure {
            outcome.failure = setupFailure
        } else if termination != .exited(0) {
            outcome.failure = ProcessSandbox.outOfMemory(cgroup, options: options)
                ?? SandboxError(.handlerFailed, ProcessSandbox.describeFailure(termination, log: outcome.logTail))
        }
        if let device = outcome.loopDevice, !(await ProcessSandbox.waitUntilDetached(device)) {
            outcome.leftovers.append("\(device) is still attached")
        }
        return outcome
    }
}
