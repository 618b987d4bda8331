import Logging
import ServiceLifecycle
import Synchronization
import ThawMetadata

/// `thaw serve-api`'s relayouts: the image of a function whose cold start recorded what it read
/// is laid out again around that record in the background, one at a time, and the name moved to
/// the result (`Relayout.layOutAfterStart`, what `thaw run NAME` does after a start). The
/// function's later cold starts, on this agent or any other, then prefetch only the hot region.
///
/// Each function is asked for once per manifest and process. A relayout that fails is logged
/// and not tried again until the agent restarts; the function keeps serving its image as pushed.
/// Two functions of one image are each moved (the second relayout finds the first's result, the
/// same manifest, already stored).
///
/// The relaid manifest holds the same files, so an instance started from the original still
/// serves the function: `codeIdentity` names both alike, and the warm instances of the original
/// stay in this agent's pool after the name moved. Only this agent knows: another agent of a
/// cluster holding warm instances of the function (after its home moved) starts new ones, as it
/// does after any move of the name (`thaw relayout`, `thaw push --name`).
final class FunctionRelayouts: Service, Sendable {
    private struct State {
        /// Functions asked for, with the manifest each pointed at.
        var requested: Set<String> = []
        /// The manifest each relaid one came from.
        var laidOutFrom: [String: String] = [:]
    }

    private let storeArguments: StoreArguments
    private let logger: Logger
    private let requests: AsyncStream<FunctionRecord>
    private let continuation: AsyncStream<FunctionRecord>.Continuation
    private let state = Mutex(State())

    init(storeArguments: StoreArguments, logger: Logger) {
        self.storeArguments = storeArguments
        self.logger = logger
        (requests, continuation) = AsyncStream.makeStream(bufferingPolicy: .unbounded)
    }

    /// Asks for `function`'s image to be laid out again, unless it was asked for before with
    /// the same manifest.
    func request(_ function: FunctionRecord) {
        let first = state.withLock { $0.requested.insert("\(function.name.value) \(function.manifestID)").inserted }
        if first { continuation.yield(function) }
    }

    /// The code an instance of `manifestID` runs, as far as its image goes: a manifest laid out
    /// again here counts as the one it came from.
    func codeIdentity(of manifestID: String) -> String {
        state.withLock { $0.laidOutFrom[manifestID] } ?? manifestID
    }

    /// Lays out what is asked for until a graceful shutdown, which also stops the relayout under
    /// way (its chunks stay in the store for GC; the name is moved only at the end).
    func run() async {
        for await function in requests.cancelOnGracefulShutdown() {
            await layOut(function)
        }
    }

    private func layOut(_ function: FunctionRecord) async {
        let storeArguments = self.storeArguments
        do {
            let outcome = try await cancelWhenGracefulShutdown {
                // Known before the name moves, so that no invocation sees the new manifest first.
                try await Relayout.layOutAfterStart(function, storeArguments: storeArguments) { relaid in
                    self.state.withLock { $0.laidOutFrom[relaid] = function.manifestID }
                }
            }
            switch outcome {
            case .laidOut(let report):
                logger.info("laid out again", metadata: [
                    "function": "\(function.name)", "manifest": "\(function.manifestID)", "relaid": "\(report.manifestID)",
                    "seconds": "\(report.seconds)", "prefetch-chunks": "\(report.recordChunks)", "prefetch-chunks-before": "\(report.originalRecordChunks)",
                ])
            case .hasSnapshot:
                logger.info("not laid out again: the manifest has a memory snapshot", metadata: [
                    "function": "\(function.name)", "manifest": "\(function.manifestID)",
                ])
            }
        } catch where Task.isCancelled || Task.isShuttingDownGracefully {
            logger.info("laying out again stopped: the service is shutting down", metadata: [
                "function": "\(function.name)", "manifest": "\(function.manifestID)",
            ])
        } catch {
            logger.warning("cannot lay the function's image out again", metadata: [
                "function": "\(function.name)", "manifest": "\(function.manifestID)", "error": "\(CommandErrors.describe(error))",
            ])
        }
    }
}
