import Foundation
import Glibc
public import ThawSandboxCore

/// The memory cgroup of one sandbox, made below this process's own, which caps what the
/// function may use (Lambda's MemorySize) and says afterwards whether the kernel killed it for
/// going over. The sandbox's init moves itself in before it starts anything (`join`), so every
/// process of the sandbox is counted.
///
/// Works with the cgroup v1 `memory` hierarchy (`memory.limit_in_bytes`, the `oom_kill` count
/// in `memory.oom_control`), as these hosts have it. Under cgroup v2 a process's own cgroup
/// cannot have children with the memory controller while it holds processes, so a sandbox's
/// cgroup would need the agent moved into a leaf of a delegated subtree first; that is not
/// done, and `available` says so.
public struct MemoryCgroup: Sendable, Equatable {
    public let path: String

    /// Makes the cgroup `name` below this process's own, capped at `limit` bytes.
    ///
    /// - Throws: `SandboxError(.setupFailed)` naming what is missing when no memory cgroup can be made.
    public static func create(name: String, limit: Int) throws -> MemoryCgroup {
        let parent = try Self.ownCgroup()
        let path = parent.path + "/" + name
        guard mkdir(path, 0o755) == 0 || errno == EEXIST else {
            throw SandboxError(.setupFailed, "cannot create the memory cgroup \(path): \(SystemCalls.errorText())")
        }
        let group = MemoryCgroup(path: path)
        do {
            try group.write(String(limit), to: "memory.limit_in_bytes")
            // Without swap accounting this file is absent; with it, swap must not lift the cap.
            try? group.write(String(limit), to: "memory.memsw.limit_in_bytes")
        } catch {
            group.remove()
            throw error
        }
        return group
    }

    public init(path: String) {
        self.path = path
    }

    /// Why no memory cgroup can be made for a sandbox on this host; nil when one can.
    public static var unavailable: String? {
        do {
            _ = try ownCgroup()
            return nil
        } catch {
            return "\(error)"
        }
    }

    /// This process's memory cgroup, from `/proc/self/cgroup`.
    static func ownCgroup() throws -> MemoryCgroup {
        for line in (SystemCalls.readFile("/proc/self/cgroup") ?? "").split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3, fields[1].split(separator: ",").contains("memory") else { continue }
            let path = "/sys/fs/cgroup/memory" + (fields[2] == "/" ? "" : String(fields[2]))
            if access(path + "/memory.limit_in_bytes", F_OK) == 0 { return MemoryCgroup(path: path) }
        }
        throw SandboxError(.setupFailed, "no cgroup v1 memory hierarchy holds this process (/proc/self/cgroup)")
    }

    /// The cgroups below this process's own whose names start with `prefix` (none when there
    /// is no memory cgroup to look in).
    public static func children(named prefix: String) -> [MemoryCgroup] {
        guard let parent = try? ownCgroup() else { return [] }
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: parent.path)) ?? []
        return entries.filter { $0.hasPrefix(prefix) }.map { MemoryCgroup(path: parent.path + "/" + $0) }
    }

    /// Moves the calling process into this cgroup; what it starts afterwards is in it too.
    public func join() throws {
        try write("0", to: "cgroup.procs")
    }

    /// How often the kernel killed a process here for going over the cap.
    public func outOfMemoryKills() -> Int {
        let line = (SystemCalls.readFile(path + "/memory.oom_control") ?? "").split(separator: "\n").first { $0.hasPrefix("oom_kill ") }
        return line.flatMap { Int($0.split(separator: " ")[1]) } ?? 0
    }

    /// Removes the cgroup once its processes are gone (up to about two seconds of retries:
    /// the kernel empties it a little after the last process is reaped).
    ///
    /// - Returns: whether it is gone.
    @discardableResult
    public func remove() -> Bool {
        for _ in 0..<200 {
            if rmdir(path) == 0 || errno == ENOENT { return true }
            usleep(10_000)
        }
        return false
    }

    /// Kills every process still in the cgroup (what an agent that died left running).
    public func killAll() {
        for line in (SystemCalls.readFile(path + "/cgroup.procs") ?? "").split(separator: "\n") {
            if let pid = Int32(line) { kill(pid, SIGKILL) }
        }
    }

    func write(_ value: String, to file: String) throws {
        let target = path + "/" + file
        let descriptor = open(target, O_WRONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw SandboxError(.setupFailed, "cannot open \(target): \(SystemCalls.errorText())")
        }
        defer { close(descriptor) }
        let bytes = Array(value.utf8)
        guard Glibc.write(descriptor, bytes, bytes.count) == bytes.count else {
            throw SandboxError(.setupFailed, "cannot write \(value) to \(target): \(SystemCalls.errorText())")
        }
    }
}
