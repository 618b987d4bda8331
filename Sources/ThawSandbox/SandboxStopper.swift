import Glibc
import Synchronization
import ThawSandboxCore

/// Stops a sandbox once, for the first of its reasons (the timeout, a response over the limit,
/// an interrupt), by killing its first process: the process sandbox's `unshare`, which passes
/// SIGKILL to the init, whose death kills its PID namespace; or the microVM's qemu.
final class SandboxStopper: Sendable {
    let child: ChildProcess
    private let firstReason = Shared<SandboxError?>(nil)

    init(child: ChildProcess) { self.child = child }

    /// Why the sandbox was stopped; nil when it ended by itself.
    var reason: SandboxError? { firstReason.withLock { $0 } }

    func stop(_ reason: SandboxError) {
        let first = firstReason.withLock { current in
            if current == nil { current = reason; return true }
            return false
        }
        if first { child.signal(SIGKILL) }
    }

    /// Stops with `.timedOut` once `timeout` has passed, unless the task is cancelled first.
    func armTimeout(_ timeout: Duration, killing what: String) -> Task<Void, Never> {
        Task { [self] in
            guard (try? await Task.sleep(for: timeout)) != nil else { return }
            stop(SandboxError(.timedOut, "the handler did not answer within \(ProcessSandbox.describe(timeout)); \(what) was killed"))
        }
    }
}

/// The last bytes of a function's log, kept for the outcome while all of it is shown.
final class LogTail: Sendable {
    private let kept = Shared<[UInt8]>([])
    let limit: Int

    init(limit: Int) { self.limit = limit }

    func append(_ piece: [UInt8]) {
        kept.withLock { bytes in
            bytes += piece
            if bytes.count > limit { bytes.removeFirst(bytes.count - limit) }
        }
    }

    var bytes: [UInt8] { kept.withLock { $0 } }
}

/// A value several tasks and threads update under a lock.
final class Shared<Value: Sendable>: Sendable {
    private let value: Mutex<Value>
    init(_ initial: Value) { value = Mutex(initial) }
    func withLock<T>(_ body: (inout Value) -> T) -> T { value.withLock { body(&$0) } }
}
