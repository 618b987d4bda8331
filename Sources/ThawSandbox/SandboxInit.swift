import Foundation
import Glibc

/// The first process of a sandbox: PID 1 of new mount, PID, UTS, IPC and (unless the host's
/// network is asked for) network namespaces, started by `ProcessSandbox` through `unshare`.
///
/// It attaches the image read-only to a loop device, mounts it as ext4 under a tmpfs overlay,
/// adds proc and a minimal /dev, chroots, becomes the image's user and starts the handler, then
/// reaps until the handler ends and exits with its status. Every mount lives in the sandbox's
/// own mount namespace, so when this process ends, however it ends, the kernel removes them
/// and the loop device (attached with autoclear) detaches: nothing is left to clean up.
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
            let identity = try build(plan, reporter: reporter)
            return try startAndReap(plan.function, identity: identity, reporter: reporter)
        } catch let error as SandboxError {
            let missing = error.kind == .handlerNotFound
            reporter.send(SandboxReport(stage: .failed, detail: error.message, handlerMissing: missing))
            return missing ? handlerMissingStatus : setupFailedStatus
        } catch {
            reporter.send(SandboxReport(stage: .failed, detail: "\(error)"))
            return setupFailedStatus
        }
    }

    struct Reporter {
        let descriptor: Int32

        func send(_ report: SandboxReport) {
            guard var line = try? JSONEncoder().encode(report) else { return }
            line.append(0x0a)
            _ = line.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        }
    }

    /// Mounts the root and enters it; returns who the handler runs as.
    static func build(_ plan: SandboxPlan, reporter: Reporter) throws -> UserDatabase.Identity {
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
        reporter.send(SandboxReport(stage: .rootMounted))

        guard chroot(root) == 0, chdir("/") == 0 else {
            throw SandboxError(.setupFailed, "cannot change root to \(root): \(SystemCalls.errorText())")
        }
        let users = UserDatabase(passwd: SystemCalls.readFile("/etc/passwd") ?? "",
                                 group: SystemCalls.readFile("/etc/group") ?? "")
        let identity = try users.resolve(plan.function.user)
        try SystemCalls.makeDirectories(plan.function.workingDirectory)
        _ = chown(plan.function.workingDirectory, identity.uid, identity.gid)
        guard chdir(plan.function.workingDirectory) == 0 else {
            throw SandboxError(.setupFailed, "cannot enter the working directory \(plan.function.workingDirectory): \(SystemCalls.errorText())")
        }
        return identity
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

    /// Becomes the image's user, starts the handler, reaps every child until it ends.
    static func startAndReap(_ function: FunctionSpec, identity: UserDatabase.Identity, reporter: Reporter) throws -> Int32 {
        var environment = function.environment
        if function.environmentValue("HOME") == nil { environment.append("HOME=" + identity.home) }
        if function.environmentValue("HOSTNAME") == nil {
            var name = [CChar](repeating: 0, count: 256)
            gethostname(&name, name.count)
            environment.append("HOSTNAME=" + String(cString: name))
        }
        let program = try locate(function.arguments[0], path: function.environmentValue("PATH") ?? FunctionSpec.defaultPath)
        let groups = identity.supplementaryGroups.map { gid_t($0) }
        guard setgroups(groups.count, groups) == 0, setgid(identity.gid) == 0, setuid(identity.uid) == 0 else {
            throw SandboxError(.setupFailed, "cannot become user \(identity.uid):\(identity.gid): \(SystemCalls.errorText())")
        }
        let handler: ChildProcess
        do {
            handler = try ChildProcess(executable: program, arguments: function.arguments, environment: environment,
                                       descriptors: [:])
        } catch let error as SandboxError {
            throw SandboxError(.handlerNotFound, "the handler \(program) cannot be started: \(error.message)")
        }
        reporter.send(SandboxReport(stage: .handlerStarted, detail: "\(handler.pid)"))
        // As PID 1 this process inherits every orphan in the sandbox: reap them all, and stop
        // when the handler itself ends (the kernel then kills whatever else is left).
        while true {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, 0)
            if pid < 0 {
                if errno == EINTR { continue }
                return setupFailedStatus
            }
            guard pid == handler.pid else { continue }
            if status & 0x7f == 0 { return (status >> 8) & 0xff }
            return 128 + (status & 0x7f)
        }
    }

    /// The program `name` names: a path as it is, otherwise the first executable of that name
    /// in `path`'s directories, as a shell's lookup finds it.
    static func locate(_ name: String, path: String) throws -> String {
        if name.contains("/") {
            guard access(name, X_OK) == 0 else {
                throw SandboxError(.handlerNotFound, "the handler \(name) is not an executable file in the image: \(SystemCalls.errorText())")
            }
            return name
        }
        for directory in path.split(separator: ":") where !directory.isEmpty {
            let candidate = directory + "/" + name
            var info = stat()
            if stat(candidate, &info) == 0, info.st_mode & S_IFMT == S_IFREG, access(candidate, X_OK) == 0 {
                return candidate
            }
        }
        throw SandboxError(.handlerNotFound, "the handler \(name) is not in the image's PATH (\(path))")
    }
}
