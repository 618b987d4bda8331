import Glibc

/// Nanoseconds on the system's monotonic clock: the same in the host and in the sandbox (there
/// is no time namespace), so the init's reports line up with the host's own timings.
public enum MonotonicTime {
    public static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }

    /// Seconds from `start` to `end`.
    public static func seconds(from start: UInt64, to end: UInt64) -> Double {
        end >= start ? Double(end - start) / 1e9 : 0
    }
}
