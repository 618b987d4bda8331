import Foundation
import Glibc
import Logging
import ThawSandbox

/// What a `thaw serve-api` that died without stopping (killed, crashed) left on this host: its
/// FUSE mount, whose server is gone, its sandboxes' empty work directories and their memory
/// cgroups. Its sandboxes end on their own: each warm sandbox's init watches the control socket
/// to its agent, even while a handler runs, and ends the sandbox when it closes; its mounts
/// and loop device go with its namespaces. A process still in a dead agent's cgroup is killed.
/// A microVM does not end with its agent (qemu has no way to follow its parent here): a qemu
/// whose state directory names a dead agent is killed, and the directory removed.
/// So is a dead agent's snapshot scratch directory.
/// The next serve-api on the host reclaims the rest before it starts, so a restarted agent
/// finds its runtime directory clean.
enum DeadAgentReclaimer {
    /// Reclaims, under `runtime`, what processes no longer running left.
    static func reclaim(runtime: String, logger: Logger) {
        var reclaimed: [String] = []
        // A snapshot's scratch directory holds a whole guest RAM file.
        for prefix in ["take-", "restore-"] {
            let parent = runtime + "/snapshots"
            for entry in (try? FileManager.default.contentsOfDirectory(atPath: parent)) ?? [] {
                guard let pid = Self.pid(in: entry, after: prefix), !Self.isRunning(pid),
                      (try? FileManager.default.removeItem(atPath: parent + "/" + entry)) != nil else { continue }
                reclaimed.append(parent + "/" + entry)
            }
        }
        for (directory, prefix) in [("mounts", "api-"), ("sandboxes", "sandbox-")] {
            let parent = runtime + "/" + directory
            for entry in (try? FileManager.default.contentsOfDirectory(atPath: parent)) ?? [] {
                guard let pid = Self.pid(in: entry, after: prefix), !Self.isRunning(pid) else { continue }
                let path = parent + "/" + entry
                // A FUSE mount whose server died answers every access with ENOTCONN; detach it.
                _ = umount2(path, Int32(MNT_DETACH))
                if rmdir(path) == 0 { reclaimed.append(path) }
            }
        }
        let vms = runtime + "/vms"
        let orphans = ((try? FileManager.default.contentsOfDirectory(atPath: vms)) ?? []).filter { entry in
            Self.pid(in: entry, after: "vm-").map { !Self.isRunning($0) } ?? false
        }
        if !orphans.isEmpty {
            let paths = orphans.map { vms + "/" + $0 + "/" }
            for process in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
                guard let pid = Int32(process), let data = FileManager.default.contents(atPath: "/proc/\(process)/cmdline") else { continue }
                let commandLine = String(decoding: data.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
                if paths.contains(where: { commandLine.contains($0) }) {
                    kill(pid, SIGKILL)
                    reclaimed.append("microVM process \(pid)")
                }
            }
            for path in paths where (try? FileManager.default.removeItem(atPath: path)) != nil { reclaimed.append(path) }
        }
        for cgroup in MemoryCgroup.children(named: "thaw-sandbox-") {
            let name = (cgroup.path as NSString).lastPathComponent
            guard let pid = Self.pid(in: name, after: "thaw-sandbox-"), !Self.isRunning(pid) else { continue }
            // A sandbox whose handler ran when its agent died may still be finishing it.
            cgroup.killAll()
            if cgroup.remove() {
                reclaimed.append(cgroup.path)
            } else {
                logger.error("cannot remove \(cgroup.path), left by a stopped agent: it still holds processes")
            }
        }
        if !reclaimed.isEmpty {
            logger.warning("reclaimed what stopped agents left: \(reclaimed.joined(separator: ", "))")
        }
    }

    /// The pid in `api-PID` or `sandbox-PID-RANDOM`.
    static func pid(in name: String, after prefix: String) -> Int32? {
        guard name.hasPrefix(prefix) else { return nil }
        return Int32(name.dropFirst(prefix.count).split(separator: "-").first ?? "")
    }

    /// Whether `pid` is a live process: a zombie (dead, not yet reaped by its parent) is not.
    static func isRunning(_ pid: Int32) -> Bool {
        guard kill(pid, 0) == 0 || errno == EPERM else { return false }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return true }
        return stat[stat.index(after: close)...].split(separator: " ").first != "Z"
    }
}
