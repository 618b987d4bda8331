public import ThawSandboxCore
import Foundation
import Glibc

/// Admission control for cold starts on one host: at most `limit` at once, the rest refused at
/// once rather than queued (DESIGN §4: a worker that queues starts without bound only makes
/// every one of them late).
///
/// A slot is an exclusive `flock` on one of `limit` files in a shared directory, so every
/// `thaw run` on the host, whatever process it is in, counts against the same cap, and a slot
/// is freed by the kernel when its holder exits, however it exits. Refusals are counted in a
/// file beside them, for operators and tests.
public enum StartSlots {
    /// Takes a free slot, or refuses at once.
    ///
    /// - Throws: `SandboxError(.refused)` naming the cap when every slot is held;
    ///   `.setupFailed` when the directory cannot be used.
    public static func acquire(directory: String, limit: Int) throws -> StartSlot {
        precondition(limit >= 1)
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw SandboxError(.setupFailed, "cannot create \(directory): \(error.localizedDescription)")
        }
        for slot in 0..<limit {
            let path = directory + "/slot-\(slot)"
            let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
            guard descriptor >= 0 else {
                throw SandboxError(.setupFailed, "cannot open \(path): \(SystemCalls.errorText())")
            }
            if flock(descriptor, LOCK_EX | LOCK_NB) == 0 { return StartSlot(descriptor: descriptor, index: slot) }
            close(descriptor)
        }
        let refusals = (try? countRefusal(directory: directory)) ?? 0
        throw SandboxError(.refused, "\(limit) cold start\(limit == 1 ? " is" : "s are") under way on this host (--max-concurrent-starts \(limit)): this start is refused (\(refusals) refused so far); try again shortly")
    }

    /// How many starts have been refused under `directory`.
    public static func refusals(directory: String) -> Int {
        Int((SystemCalls.readFile(directory + "/refused") ?? "").trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
    }

    static func countRefusal(directory: String) throws -> Int {
        let path = directory + "/refused"
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw SandboxError(.setupFailed, "cannot open \(path)") }
        defer { close(descriptor) }
        flock(descriptor, LOCK_EX)
        var buffer = [UInt8](repeating: 0, count: 32)
        let count = pread(descriptor, &buffer, buffer.count, 0)
        let current = Int(String(decoding: buffer.prefix(max(count, 0)), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        let text = Array("\(current + 1)\n".utf8)
        _ = ftruncate(descriptor, 0)
        _ = pwrite(descriptor, text, text.count, 0)
        return current + 1
    }
}

/// One held start slot; released by `release()`, at deinit, or by the kernel at exit.
public final class StartSlot: @unchecked Sendable {
    private var descriptor: Int32
    public let index: Int
    private let lock = NSLock()

    init(descriptor: Int32, index: Int) {
        self.descriptor = descriptor
        self.index = index
    }

    public func release() {
        lock.withLock {
            if descriptor >= 0 {
                close(descriptor)
                descriptor = -1
            }
        }
    }

    deinit { release() }
}
