import CMalloc

/// glibc returns every freed allocation above the mmap threshold to the kernel, so a hot path
/// that allocates a 512 KiB buffer per chunk page-faults on every call and runs at a third of its
/// speed. Raising the mmap and trim thresholds together keeps such buffers in the heap (raising
/// only one makes it worse). Call once at start-up in processes that seal or serve chunks.
public enum MallocTuning {
    public static func keepLargeBuffers() {
        _ = mallopt(M_MMAP_THRESHOLD, 32 << 20)
        _ = mallopt(M_TRIM_THRESHOLD, 256 << 20)
    }
}
