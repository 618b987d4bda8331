import CFuse3
#if canImport(Glibc)
import Glibc
#endif
public import Logging
import Synchronization

/// One mount of a `FUSEFileSystem` at a directory.
///
/// The mount is read-only, open to every user (`allow_other`: the VMM that opens the files may
/// run as another user), and shown as `thaw` of type `fuse.thaw` in the mount table. Requests
/// are served by libfuse's multithreaded loop on threads of its own, never on Swift's
/// cooperative pool, whose threads must not block.
///
/// Call `unmount()` before the last reference goes: the loop holds what it serves, so dropping a
/// mount leaves it mounted and served until the process exits.
public final class FUSEMount: Sendable {
    /// The directory as given to `mount`.
    public let directory: String
    /// The directory with symbolic links resolved, as the kernel's mount table shows it.
    let mountPoint: String
    private let handle: FUSEHandle
    private let session: MountSession
    private let loop: LoopThread
    private let logger: Logger
    /// The one tear-down, shared by every call of `unmount()`.
    private let teardown = Mutex<Task<Void, Never>?>(nil)

    /// Open to all users with the kernel checking the files' modes, and named so that the mount
    /// table says whose it is. Not `ro`, which would refuse the read-write open a VMM makes to map
    /// guest RAM privately: every change is refused by the file system itself instead
    /// (`FUSEOperations`).
    static let mountOptions = "allow_other,default_permissions,fsname=thaw,subtype=thaw"
    /// The kernel starts the handshake as soon as the mount exists; not hearing it means the
    /// FUSE device is broken.
    static let handshakeTimeout: Duration = .seconds(10)
    /// Some files are released by the kernel a moment after their last user lets go (a detached
    /// loop device's backing file), so a busy mount point is retried for about a second before
    /// it is detached.
    static let busyRetries = 20
    static let busyRetryInterval: Duration = .milliseconds(50)

    private init(directory: String, mountPoint: String, handle: FUSEHandle, session: MountSession,
                 loop: LoopThread, logger: Logger) {
        self.directory = directory
        self.mountPoint = mountPoint
        self.handle = handle
        self.session = session
        self.loop = loop
        self.logger = logger
    }

    /// Mounts `fileSystem` read-only at `directory`, which must exist, and returns once the kernel
    /// has completed the FUSE handshake, so the files can be opened straight away.
    ///
    /// File data may stay in the kernel's page cache across opens, since a file's bytes never
    /// change; directory lookups are trusted for a second only, since files come and go.
    ///
    /// - Throws: `FUSEError` naming the directory: missing, not a directory, already a Thaw mount,
    ///   or refused by libfuse or the kernel.
    public static func mount(_ fileSystem: FUSEFileSystem, at directory: String,
                             logger: Logger = Logger(label: "thaw.fuse")) async throws -> FUSEMount {
        let mountPoint = try MountPoint.resolve(directory)
        try MountPoint.claim(mountPoint, requested: directory)
        var logger = logger
        logger[metadataKey: "mount"] = "\(directory)"
        let session = MountSession(fileSystem: fileSystem, logger: logger)

        guard let handle = FUSEHandle.create(options: mountOptions, session: session) else {
            MountPoint.release(mountPoint)
            throw FUSEError(.setupFailed, path: directory,
                            message: "libfuse refused the mount options \(mountOptions) (its reason is on standard error)")
        }
        guard handle.mount(at: mountPoint) else {
            let code = errno
            handle.destroy()
            MountPoint.release(mountPoint)
            throw FUSEError(.mountFailed, path: directory, errno: code, message: "the kernel refused the FUSE mount")
        }
        // The loop thread holds the session: libfuse's callbacks reach it through an unretained
        // pointer for as long as the loop runs.
        let started = LoopThread.start(name: "thaw-fuse") { [session] in
            withExtendedLifetime(session) { handle.runLoop() }
        }
        let loop: LoopThread
        switch started {
        case .success(let thread):
            loop = thread
        case .failure(let error):
            // Nothing has used the mount yet, so libfuse's lazy unmount is as good as a normal one.
            handle.unmountAndClose()
            handle.destroy()
            MountPoint.release(mountPoint)
            throw FUSEError(.threadFailed, path: directory, errno: error.code, message: "cannot start the FUSE loop's thread")
        }

        let mount = FUSEMount(directory: directory, mountPoint: mountPoint, handle: handle, session: session,
                              loop: loop, logger: logger)
        switch await mount.handshake() {
        case .initialized:
            logger.info("FUSE file system mounted", metadata: ["files": "\(fileSystem.names.count)"])
            return mount
        case .loopEnded(let status):
            await mount.unmount()
            throw FUSEError(.handshakeFailed, path: directory, errno: status < 0 ? -status : nil,
                            message: "the FUSE loop ended (status \(status)) before the kernel's handshake")
        case .timedOut:
            await mount.unmount()
            throw FUSEError(.handshakeFailed, path: directory, message: "no FUSE handshake from the kernel within \(handshakeTimeout)")
        case .cancelled:
            await mount.unmount()
            throw CancellationError()
        }
    }

    private enum HandshakeOutcome: Sendable {
        case initialized, loopEnded(Int32), timedOut, cancelled
    }

    /// Whichever comes first: the `init` callback, the loop's end, the deadline or cancellation.
    private func handshake() async -> HandshakeOutcome {
        let initialized = session.initialized
        let ended = loop.ended
        return await withTaskGroup(of: HandshakeOutcome.self) { group in
            group.addTask { await initialized.wait() == nil ? .cancelled : .initialized }
            group.addTask { await ended.wait().map(HandshakeOutcome.loopEnded) ?? .cancelled }
            group.addTask {
                do { try await Task.sleep(for: Self.handshakeTimeout) } catch { return .cancelled }
                return .timedOut
            }
            defer { group.cancelAll() }
            return await group.next() ?? .cancelled
        }
    }

    /// Unmounts, stops the loop, waits for its thread and frees libfuse's handle; returns when all
    /// of that is done. Idempotent and safe from any task: later and concurrent calls wait for the
    /// first one's work.
    ///
    /// A normal unmount is tried first. When the kernel keeps reporting the mount busy (a file on
    /// it is still open), the mount is detached instead and logged: the directory is free at once
    /// and reads through files still open fail from then on.
    public func unmount() async {
        let task = teardown.withLock { task in
            if let task { return task }
            let started = Task { await self.tearDown() }
            task = started
            return started
        }
        await task.value
    }

    private func tearDown() async {
        let removal = await removeFromKernel()
        let status = await loop.join()
        if status != 0 { logger.warning("the FUSE loop ended with an error", metadata: ["status": "\(status)"]) }
        switch removal {
        case .unmounted:
            // The kernel ended the connection when the mount went, so libfuse only closes the device.
            handle.unmountAndClose()
            handle.destroy()
        case .detached(let waker):
            // libfuse would unmount the directory again, and something else may be mounted there
            // by now; destroying the handle closes the device, which ends the connection.
            handle.destroy()
            await waker?.join()
        case .unmountedByLibfuse:
            handle.destroy()
        }
        MountPoint.release(mountPoint)
        logger.info("FUSE file system unmounted")
    }

    private enum Removal {
        /// Unmounted by this process or by someone else before.
        case unmounted
        /// Detached while busy; the thread waking the loop, if one was started.
        case detached(LoopThread?)
        /// Without the right to unmount, libfuse's own (lazy, via fusermount3) unmount was used.
        case unmountedByLibfuse
    }

    private func removeFromKernel() async -> Removal {
        var attempt = 0
        while true {
            if umount2(mountPoint, 0) == 0 { return .unmounted }
            let code = errno
            switch code {
            case EINVAL, ENOENT:
                logger.notice("the FUSE file system was already unmounted")
                return .unmounted
            case EPERM:
                handle.unmountAndClose()
                return .unmountedByLibfuse
            case EBUSY where attempt < Self.busyRetries:
                attempt += 1
                try? await Task.sleep(for: Self.busyRetryInterval)
            default:
                return .detached(detach(after: code))
            }
        }
    }

    /// Detaches the busy mount and makes its loop end.
    ///
    /// libfuse checks its exit flag only after serving a request, and the remaining users may
    /// never send one; so a request is made through the root directory, opened before detaching
    /// because the path no longer leads there afterwards. Should the loop end on another request
    /// first, this one waits until the device closes, hence a thread of its own.
    private func detach(after code: Int32) -> LoopThread? {
        let root = open(mountPoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if umount2(mountPoint, Int32(MNT_DETACH)) == 0 {
            logger.warning("the FUSE mount point stayed busy; detached it, so files still open there now fail",
                           metadata: ["errno": "\(code)"])
        } else {
            logger.error("cannot detach the FUSE mount", metadata: ["errno": "\(errno)", "unmountErrno": "\(code)"])
        }
        handle.exit()
        guard root >= 0 else {
            logger.error("cannot open the FUSE root to stop the loop; it stops at the next request",
                         metadata: ["errno": "\(errno)"])
            return nil
        }
        let waking = LoopThread.start(name: "thaw-fuse-wake") {
            var statistics = statvfs()
            _ = fstatvfs(root, &statistics)
            close(root)
            return 0
        }
        guard case .success(let waker) = waking else {
            close(root)
            logger.error("cannot start a thread to stop the FUSE loop; it stops at the next request")
            return nil
        }
        return waker
    }
}
