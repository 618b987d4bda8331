import CLinux
import Foundation
import Glibc
import ThawSandboxCore

/// The first process of a sandbox: PID 1 of new mount, PID, UTS, IPC and (unless the host's
/// network is asked for) network namespaces, started by `ProcessSandbox` or `WarmSandbox`
/// through `unshare`.
///
/// It moves into the sandbox's memory cgroup when there is one, attaches the image read-only
/// to a loop device, mounts it as ext4 under a tmpfs overlay, adds proc and a minimal /dev,
/// and chroots. Then, for a cold start, it starts the handler as the image's user (becoming
/// that user first, unless it is preloading the image: see `ImagePreloader`), reaps until the
/// handler ends and exits with its status; for a warm sandbox it becomes the image's user and
/// serves handler starts from the host (`serve`). Every mount lives in the sandbox's own mount
/// namespace, so when this process ends, however it ends, the kernel removes them and the loop
/// device (attached with autoclear) detaches; the host removes the empty work directory and
/// cgroup.
public enum SandboxInit {
    /// Exit status when the sandbox could not be built.
    public static let setupFailedStatus: Int32 = 125
    /// Exit status when the handler's program is missing or cannot be executed.
    public static let handlerMissingStatus: Int32 = 127

    /// Runs `plan` and returns the status this process should exit with.
    public static func run(_ plan: SandboxPlan, reportDescriptor: Int32 = 3) -> Int32 {
        _ = fcntl(reportDescriptor, F_SETFD, FD_CLOEXEC)
        let reporter = Reporter(descriptor: reportDescriptor)
        do {
            if let cgroup = plan.memoryCgroup {
                try MemoryCgroup(path: cgroup).join()
            }
            let preloading = try build(plan, reporter: reporter)
            if plan.reusable { return try serve(plan.function, control: reportDescriptor, reporter: reporter) }
            // The preloading thread opens files by inode, which needs root: this process stays
            // root then, and only the handler becomes the function's user.
            return try startAndReap(plan.function, keepPrivileges: preloading, reporter: reporter)
        } catch let error as SandboxError {
            reporter.send(.failure(error))
            return error.kind == .handlerNotFound ? handlerMissingStatus : setupFailedStatus
        } catch {
            reporter.send(SandboxReport(stage: .failed, detail: "\(error)"))
            return setupFailedStatus
        }
    }

    /// Reports a failure that came before the plan could be run (an unreadable plan) to the
    /// host, as a setup failure, and returns the status to exit with.
    public static func fail(_ message: String, reportDescriptor: Int32 = 3) -> Int32 {
        Reporter(descriptor: reportDescriptor).send(.failure(SandboxError(.setupFailed, message)))
        return setupFailedStatus
    }

    struct Reporter {
        let descriptor: Int32

        func send(_ report: SandboxReport) {
            guard var line = try? JSONEncoder().encode(report) else { return }
            line.append(0x0a)
            _ = line.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        }
    }

    /// Mounts the root and enters it.
    ///
    /// - Returns: whether it started preloading the image (`ImagePreloader`).
    @discardableResult
    static func build(_ plan: SandboxPlan, reporter: Reporter) throws -> Bool {
        let work = plan.workDirectory
        try SystemCalls.mount("thaw-sandbox", on: work, type: "tmpfs", flags: [.noDevices, .noSetUID],
                              data: "size=\(plan.tmpSize),mode=0755")
        for directory in ["lower", "upper", "work", "root"] {
            try SystemCalls.makeDirectories(work + "/" + directory)
        }
        let loop = try LoopDevice.attach(plan.imageFile)
        reporter.send(SandboxReport(stage: .deviceAttached, detail: loop.path))
        if let kib = plan.deviceReadAheadKiB { try loop.setReadAhead(kib: kib) }
        defer { loop.closeDescriptor() }
        try SystemCalls.mount(loop.path, on: work + "/lower", type: "ext4", flags: [.readOnly, .noDevices])
        // Before anything else, so that the loading runs ahead of the handler.
        // Not in a warm sandbox, whose init becomes the image's user and could open no file.
        let preloading = !plan.reusable
            && ImagePreloader.start(mount: work + "/lower", device: loop.path, runs: plan.preload?.runs ?? [])
        let root = work + "/root"
        try SystemCalls.mount("overlay", on: root, type: "overlay", flags: [.noDevices],
                              data: "lowerdir=\(work)/lower,upperdir=\(work)/upper,workdir=\(work)/work")
        try SystemCalls.makeDirectories(root + "/proc")
        try SystemCalls.mount("proc", on: root + "/proc", type: "proc", flags: [.noSetUID, .noDevices, .noExec])
        try makeDevices(root + "/dev")
        try SystemCalls.makeDirectories(root + "/tmp")
        chmod(root + "/tmp", 0o1777)
        guard sethostname(plan.hostname, plan.hostname.utf8.count) == 0 else {
            throw SandboxError(.setupFailed, "cannot set the hostname: \(SystemCalls.errorText())")
        }
        if plan.network == .none { try SystemCalls.loopbackUp() }
        reporter.send(SandboxReport(stage: .rootMounted, detail: preloading ? "preloading \(plan.preload?.runs.count ?? 0) runs" : nil))

        guard chroot(root) == 0, chdir("/") == 0 else {
            throw SandboxError(.setupFailed, "cannot change root to \(root): \(SystemCalls.errorText())")
        }
        return preloading
    }

    /// A tmpfs /dev with the devices programs expect: null, zero, full, random, urandom, tty.
    static func makeDevices(_ dev: String) throws {
        try SystemCalls.makeDirectories(dev)
        try SystemCalls.mount("thaw-dev", on: dev, type: "tmpfs", flags: [.noSetUID, .noExec], data: "size=64k,mode=0755")
        let devices: [(String, UInt32, UInt32)] = [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
                                                   ("urandom", 1, 9), ("tty", 5, 0)]
        for (name, major, minor) in devices { try SystemCalls.makeDevice(dev + "/" + name, major: major, minor: minor) }
        for (name, target) in [("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                               ("stderr", "/proc/self/fd/2")] {
            try SystemCalls.symlink(target, at: dev + "/" + name)
        }
        try SystemCalls.makeDirectories(dev + "/shm")
        chmod(dev + "/shm", 0o1777)
    }

    /// Starts the handler as the image's user, reaps every child until it ends. Unless
    /// `keepPrivileges`, this process becomes that user first.
    static func startAndReap(_ function: FunctionSpec, keepPrivileges: Bool, reporter: Reporter) throws -> Int32 {
        let handler = try HandlerLauncher.start(function.launch, keepPrivileges: keepPrivileges)
        reporter.send(SandboxReport(stage: .handlerStarted, detail: "\(handler)"))
        return HandlerLauncher.reap(until: handler).shellStatus
    }

    /// What the host asks of a warm sandbox's init over the control socket, one byte each.
    public enum ControlRequest: UInt8 {
        /// Start a handler on the three descriptors attached (its standard input, output and
        /// error); answered with `.handlerStarted` (or `.failed`, and the init exits).
        case startHandler = 0x53 // "S"
        /// Wait for the handler to end; answered with `.handlerEnded`.
        case waitForHandler = 0x57 // "W"
    }

    /// A warm sandbox's loop: becomes the image's user once, then starts a handler each time
    /// the host asks and reports how it ended, until the host closes the control socket. The
    /// host feeds and drains the handler's pipes itself, so the init never touches an event.
    ///
    /// When a handler ends, every other process in the sandbox is killed too: a background
    /// process it left would hold the pipes open, and the host would wait for their end until
    /// the timeout. While a handler runs the init watches the control socket as well, so a host
    /// that dies (its end closes) takes the sandbox with it even mid-invocation.
    static func serve(_ function: FunctionSpec, control: Int32, reporter: Reporter) throws -> Int32 {
        let prepared = try HandlerLauncher.prepare(function.launch, dropPrivileges: true)
        var handler: Int32?
        var request: UInt8 = 0
        var descriptors: [Int32] = [-1, -1, -1]
        while true {
            var received: Int32 = 0
            let count = thaw_receive_descriptors(control, &request, 1, &descriptors, 3, &received)
            guard count == 1, let kind = ControlRequest(rawValue: request) else {
                // The host went away (or spoke nonsense): end, and the namespace with us.
                killOthers()
                return 0
            }
            switch kind {
            case .startHandler:
                let given = descriptors.prefix(Int(received))
                defer { given.forEach { close($0) } }
                guard given.count == 3, handler == nil else {
                    throw SandboxError(.setupFailed, "a handler start came with \(given.count) descriptors, not 3, or while a handler ran")
                }
                let pid = try prepared.spawn(descriptors: [0: given[0], 1: given[1], 2: given[2]])
                handler = pid
                reporter.send(SandboxReport(stage: .handlerStarted, detail: "\(pid)"))
            case .waitForHandler:
                guard let pid = handler else {
                    throw SandboxError(.setupFailed, "the host waited for a handler that was never started")
                }
                guard let status = reapWatching(pid, control: control) else {
                    killOthers()
                    return 0
                }
                handler = nil
                killOthers()
                reporter.send(SandboxReport(stage: .handlerEnded, status: status))
            }
        }
    }

    /// Waits until `handler` ends and returns its status as a shell reports it; nil when the
    /// host's end of `control` closed first. One poll waits on both: the handler's pidfd and
    /// the socket, which during an invocation can only become readable by closing.
    static func reapWatching(_ handler: Int32, control: Int32) -> Int32? {
        let process = thaw_pidfd_open(handler)
        defer { if process >= 0 { close(process) } }
        while true {
            var status: Int32 = 0
            let pid = waitpid(handler, &status, WNOHANG)
            if pid == handler { return Termination(waitStatus: status).shellStatus }
            if pid < 0 && errno != EINTR { return 125 }
            var watched = [pollfd(fd: control, events: Int16(POLLIN), revents: 0),
                           pollfd(fd: process, events: Int16(POLLIN), revents: 0)]
            // Without a pidfd (an old kernel), look again every 10 ms.
            guard poll(&watched, process >= 0 ? 2 : 1, process >= 0 ? -1 : 10) > 0 else { continue }
            if watched[0].revents != 0 {
                var byte: UInt8 = 0
                let peeked = recv(control, &byte, 1, Int32(MSG_PEEK) | Int32(MSG_DONTWAIT))
                if peeked < 0 && (errno == EAGAIN || errno == EINTR) { continue }
                // Closed, broken, or a request the host never sends mid-invocation: stop here.
                return nil
            }
        }
    }

    /// Kills every process of the sandbox but the init (in a PID namespace, `kill(-1)` reaches
    /// exactly those), and reaps them.
    static func killOthers() {
        _ = kill(-1, SIGKILL)
        var status: Int32 = 0
        while waitpid(-1, &status, 0) > 0 || errno == EINTR {}
    }
}
