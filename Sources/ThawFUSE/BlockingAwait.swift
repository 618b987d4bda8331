import Dispatch
import Synchronization

/// Runs async work for a libfuse thread, which is a plain thread that must answer its request
/// before taking the next one.
///
/// The calling thread blocks on a semaphore while a task does the work on Swift's own executor.
/// That is only sound because libfuse's threads are never Swift concurrency threads: blocking one
/// of those would starve the very pool the task needs.
enum BlockingAwait {
    private final class Outcome<Value: Sendable>: Sendable {
        let result = Mutex<Result<Value, any Error>?>(nil)
    }

    static func result<Value: Sendable>(
        of operation: @escaping @Sendable () async throws -> Value
    ) -> Result<Value, any Error> {
        let outcome = Outcome<Value>()
        let done = DispatchSemaphore(value: 0)
        Task.detached {
            let result: Result<Value, any Error>
            do { result = .success(try await operation()) } catch { result = .failure(error) }
            outcome.result.withLock { $0 = result }
            done.signal()
        }
        done.wait()
        return outcome.result.withLock { $0! }
    }
}
