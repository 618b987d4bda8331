import CFuse3
#if canImport(Glibc)
import Glibc
#endif

/// libfuse's handle for one mount (`struct fuse *`).
///
/// libfuse's handle is not thread-safe in general; handing it between threads is sound here
/// because each call happens at its own point of the mount's life: set-up before the loop runs,
/// the loop on its own thread, `fuse_exit` (which only sets a flag) from any thread, and the
/// tear-down calls after the loop has returned.
struct FUSEHandle: @unchecked Sendable {
    let pointer: OpaquePointer

    /// libfuse's handle for `session` with `options` (`-o` syntax); nil when libfuse refuses them,
    /// which it explains on standard error.
    ///
    /// No signal handlers are installed: the process's owner decides what a signal means and
    /// unmounts through `FUSEMount.unmount()`.
    static func create(options: String, session: MountSession) -> FUSEHandle? {
        let arguments = ["thaw", "-o", options]
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for argument in argv { free(argument) } }
        var operations = FUSEOperations.table()
        let pointer = argv.withUnsafeMutableBufferPointer { argv -> OpaquePointer? in
            // `allocated: 0`: the strings stay ours. libfuse swaps in its own copy as it parses,
            // which fuse_opt_free_args then frees.
            var parsed = fuse_args(argc: Int32(arguments.count), argv: argv.baseAddress, allocated: 0)
            defer { fuse_opt_free_args(&parsed) }
            return thaw_fuse_new(&parsed, &operations, Unmanaged.passUnretained(session).toOpaque())
        }
        return pointer.map(FUSEHandle.init)
    }

    /// Mounts at `directory`; on failure `errno` says why.
    func mount(at directory: String) -> Bool {
        fuse_mount(pointer, directory) == 0
    }

    /// Worker threads the loop may run: each blocks on one read until its chunk arrives, so
    /// this is how many reads wait on fetches at once. As many as the kernel may queue in the
    /// background (`FUSEOperations`), plus room for the reads of faulting guests and loop mounts.
    static let maximumThreads: UInt32 = 96

    /// Serves requests on the calling thread and libfuse's worker threads until the mount goes
    /// away or `exit()` is noticed.
    func runLoop() -> Int32 {
        thaw_fuse_loop_mt(pointer, Self.maximumThreads)
    }

    /// Asks the loop to stop after the request each of its threads is serving.
    func exit() {
        fuse_exit(pointer)
    }

    /// Closes the FUSE device. libfuse also unmounts, lazily, unless the kernel has already ended
    /// the connection; so call this only when the mount is gone or must go that way.
    func unmountAndClose() {
        fuse_unmount(pointer)
    }

    /// Frees libfuse's handle, closing the FUSE device if still open. Only once the loop has ended.
    func destroy() {
        fuse_destroy(pointer)
    }
}
