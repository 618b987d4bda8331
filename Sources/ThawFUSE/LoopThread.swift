#if canImport(Glibc)
import Glibc
#endif
import CFuse3
import Synchronization

/// A thread of its own for libfuse's blocking loop.
///
/// The loop blocks its thread for the mount's whole life, which Swift's cooperative pool must
/// never be asked to give up. Its end is announced through `ended` so async code can await it
/// instead of blocking in `pthread_join`.
final class LoopThread: Sendable {
    /// The loop's return value, once it has returned.
    let ended: Signal<Int32>
    private let thread: pthread_t
    private let joined = Mutex(false)

    private final class Start {
        let body: @Sendable () -> Int32
        let ended: Signal<Int32>

        init(body: @escaping @Sendable () -> Int32, ended: Signal<Int32>) {
            self.body = body
            self.ended = ended
        }
    }

    private init(thread: pthread_t, ended: Signal<Int32>) {
        self.thread = thread
        self.ended = ended
    }

    /// Starts `body` on a new thread named `name` (at most 15 bytes); nil with the errno when the
    /// system refuses a thread.
    static func start(name: String, _ body: @escaping @Sendable () -> Int32) -> Result<LoopThread, RequestError> {
        let ended = Signal<Int32>()
        let start = Unmanaged.passRetained(Start(body: body, ended: ended))
        var thread = pthread_t()
        let status = pthread_create(&thread, nil, { argument in
            let start = Unmanaged<Start>.fromOpaque(argument!).takeRetainedValue()
            start.ended.fire(start.body())
            return nil
        }, start.toOpaque())
        guard status == 0 else {
            start.release()
            return .failure(RequestError(code: status))
        }
        _ = thaw_name_thread(thread, name)
        return .success(LoopThread(thread: thread, ended: ended))
    }

    /// Waits for the loop to return, then reaps the thread; returns the loop's result. Awaiting is
    /// shielded from the caller's cancellation: the thread must be reaped exactly once, after it
    /// has ended.
    @discardableResult
    func join() async -> Int32 {
        let ended = ended
        let status = await Task.detached { await ended.wait() }.value ?? 0
        let mustJoin = joined.withLock { joined in
            defer { joined = true }
            return !joined
        }
        if mustJoin { pthread_join(thread, nil) }
        return status
    }
}
