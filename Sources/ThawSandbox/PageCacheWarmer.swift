import Foundation
import Glibc
import Synchronization

/// Loads byte ranges of a file into the kernel's page cache, in order, on a thread of its own:
/// the recorded working set of a restored microVM's RAM file, so that the guest's page faults
/// find their pages already cached instead of each making a round trip through FUSE.
///
/// Why the page cache and not only the agent's L1: qemu maps the RAM file privately, and every
/// fault on a page that is not cached is one FUSE read of 4 KiB, served one at a time as the
/// single vCPU touches memory (a restore touches tens of thousands of pages). A page already in
/// the page cache is mapped by the fault alone, with its cached neighbours (fault-around). The
/// cache belongs to the file, so it must be filled after qemu's own open of it: that open comes
/// first and may drop what the cache held.
///
/// Each range is asked for with `POSIX_FADV_WILLNEED`, which reads it even though Thaw's FUSE
/// mount turns readahead off, and returns once the reads are queued; the kernel throttles the
/// thread when too many are outstanding, and a fault on a page still being read waits for it.
public final class PageCacheWarmer: Sendable {
    private let stopped = Atomic<Bool>(false)
    private let counts = Mutex((ranges: 0, bytes: UInt64(0), failure: String?.none))
    private let completion = Mutex<(done: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    private init() {}

    /// Bytes one `POSIX_FADV_WILLNEED` call loads at most: the larger of the file's readahead
    /// window and its device's largest request, 128 KiB for a FUSE file (its mount turns
    /// readahead off, and the kernel's default request size is 32 pages).
    static let largestRequest = 128 * 1024

    /// Starts warming `ranges` of the file at `path`, in their order.
    public static func start(path: String, ranges: [(offset: UInt64, length: Int)]) -> PageCacheWarmer {
        let warmer = PageCacheWarmer()
        Thread { warmer.warm(path: path, ranges: ranges) }.start()
        return warmer
    }

    /// Asks the thread to stop before its next range (the VM is gone).
    public func stop() { stopped.store(true, ordering: .relaxed) }

    /// Ranges and bytes asked for so far, and why the warmer stopped early if it did.
    public var progress: (ranges: Int, bytes: UInt64, failure: String?) { counts.withLock { $0 } }

    /// Whether the thread has finished.
    public var finished: Bool { completion.withLock { $0.done } }

    /// Stops the thread before its next range and returns once it has closed the file: a range
    /// being asked for when it stops may wait for its reads to be queued (FUSE bounds the
    /// reads in flight), and the mount should not go while the warmer holds the file open.
    public func stopAndWait() async {
        stop()
        await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
            let finishedAlready = completion.withLock { state -> Bool in
                if state.done { return true }
                state.waiters.append(waiter)
                return false
            }
            if finishedAlready { waiter.resume() }
        }
    }

    private func warm(path: String, ranges: [(offset: UInt64, length: Int)]) {
        defer {
            let waiters = completion.withLock { state in
                state.done = true
                return state.waiters
            }
            for waiter in waiters { waiter.resume() }
        }
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            let reason = "cannot open \(path): \(String(cString: strerror(errno)))"
            counts.withLock { $0.failure = reason }
            return
        }
        defer { close(descriptor) }
        for range in ranges {
            guard !stopped.load(ordering: .relaxed) else { return }
            if let failed = Self.willNeed(descriptor, offset: range.offset, length: UInt64(range.length), piece: Self.largestRequest) {
                let reason = "cannot load \(path) at \(failed.offset) into the page cache: \(String(cString: strerror(failed.status)))"
                counts.withLock { $0.failure = reason }
                return
            }
            counts.withLock {
                $0.ranges += 1
                $0.bytes += UInt64(range.length)
            }
        }
    }

    /// Asks the kernel to load `length` bytes at `offset` of `descriptor` into the page cache
    /// (`POSIX_FADV_WILLNEED`), `piece` bytes per call: one call reads no more than the file's
    /// largest read (the kernel clips a longer range and drops the rest without saying so).
    ///
    /// - Returns: nil once every piece is asked for; else where a call failed, and its error.
    static func willNeed(_ descriptor: Int32, offset: UInt64, length: UInt64, piece: Int) -> (offset: UInt64, status: Int32)? {
        var at = offset
        let end = offset + length
        while at < end {
            let count = min(end - at, UInt64(piece))
            let status = posix_fadvise(descriptor, off_t(at), off_t(count), POSIX_FADV_WILLNEED)
            guard status == 0 else { return (at, status) }
            at += count
        }
        return nil
    }
}
