public import Foundation

/// Helpers for tests that check Thaw against real tools: temporary directories, running a
/// command and capturing its output, and read-only loop mounts.
public enum TestSupport {
    /// A fresh temporary directory, removed after `body`.
    public static func withTemporaryDirectory<T>(_ body: (String) throws -> T) throws -> T {
        let path = NSTemporaryDirectory() + "thaw-test-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        defer {
            _ = try? run("umount", [path + "/mnt"], check: false)
            try? FileManager.default.removeItem(atPath: path)
        }
        return try body(path)
    }

    /// A fresh temporary directory, removed after the async `body`.
    public static func withTemporaryDirectory<T>(_ body: (String) async throws -> T) async throws -> T {
        let path = NSTemporaryDirectory() + "thaw-test-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        defer {
            _ = try? run("umount", [path + "/mnt"], check: false)
            try? FileManager.default.removeItem(atPath: path)
        }
        return try await body(path)
    }

    public struct CommandResult: Sendable {
        public var status: Int32
        public var output: String
    }

    public struct CommandFailed: Error, CustomStringConvertible {
        public var description: String
    }

    /// Runs `tool` (found on PATH) and returns its exit status and combined output.
    @discardableResult
    public static func run(_ tool: String, _ arguments: [String], check: Bool = true, input: Data? = nil) throws -> CommandResult {
        try launch("/usr/bin/env", [tool] + arguments, environment: [:], input: input, check: check)
    }

    /// Runs `tool` with `environment` added to this process's.
    @discardableResult
    public static func runWithEnvironment(_ tool: String, _ arguments: [String], environment: [String: String],
                                          check: Bool = true) throws -> CommandResult {
        try launch("/usr/bin/env", [tool] + arguments, environment: environment, input: nil, check: check)
    }

    static func launch(_ executable: String, _ arguments: [String], environment: [String: String], input: Data?,
                       check: Bool) throws -> CommandResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        let stdin = Pipe()
        process.standardInput = stdin
        try process.run()
        if let input { stdin.fileHandleForWriting.write(input) }
        try stdin.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let result = CommandResult(status: process.terminationStatus, output: String(decoding: data, as: UTF8.self))
        if check && result.status != 0 {
            let name = URL(fileURLWithPath: executable).lastPathComponent
            throw CommandFailed(description: "\(name) \(arguments.joined(separator: " ")) exited \(result.status):\n\(result.output)")
        }
        return result
    }

    /// `e2fsck -fn` on an image: nil when clean, its report otherwise.
    public static func fsckProblems(_ image: String) throws -> String? {
        let result = try run("e2fsck", ["-fn", image], check: false)
        return result.status == 0 ? nil : result.output
    }

    /// Runs blocking `body` on a thread of its own, so waiting for it (a command, a read of a
    /// FUSE file the test process serves itself) never holds one of the few threads Swift's
    /// concurrency pool has, which the code under test needs.
    public static func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { try body() }) }.start()
        }
    }

    /// `thaw(arguments, ...)` on a thread of its own: a command that runs for seconds (a
    /// collection, a microVM boot) must not hold a pool thread while it runs, or tests that
    /// run beside it starve.
    public static func thawOnOwnThread(_ arguments: [String], environment: [String: String] = [:],
                                       check: Bool = true) async throws -> CommandResult {
        try await onOwnThread { try thaw(arguments, environment: environment, check: check) }
    }

    /// `run(tool, arguments, check: false)` on a thread of its own.
    public static func runOnOwnThread(_ tool: String, _ arguments: [String]) async throws -> CommandResult {
        try await onOwnThread { try run(tool, arguments, check: false) }
    }

    /// Whether two files hold the same bytes.
    public static func contentsEqual(_ a: String, _ b: String) throws -> Bool {
        try Data(contentsOf: URL(fileURLWithPath: a)) == Data(contentsOf: URL(fileURLWithPath: b))
    }

    /// Unmounts `path`, trying again for a few seconds while the kernel calls it busy (on a
    /// loaded machine a just-closed file can keep a mount busy for a moment). Returns whether
    /// it is unmounted.
    ///
    /// A mount a test made itself can stay busy past the retries when a child process another
    /// test forked meanwhile inherited a descriptor opened in it; it is then detached lazily,
    /// which takes it out of the tree at once, and the answer is still true.
    @discardableResult
    public static func unmount(_ path: String, attempts: Int = 50) -> Bool {
        for attempt in 1...attempts {
            if let result = try? run("umount", [path], check: false), result.status == 0 { return true }
            if attempt < attempts { usleep(100_000) }
        }
        if let result = try? run("umount", ["-l", path], check: false), result.status == 0 { return true }
        return false
    }

    /// Mounts `image` read-only at `mountPoint` for `body`.
    public static func withLoopMount<T>(_ image: String, at mountPoint: String, _ body: () throws -> T) throws -> T {
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        try run("mount", ["-o", "ro,loop", "-t", "ext4", image, mountPoint])
        defer { unmount(mountPoint) }
        return try body()
    }

    /// The repository root (for scripts under Tests/Fixtures).
    public static var repositoryRoot: String {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }

    /// The microVM's guest init, where scripts/build-guest.sh installs it and `thaw run` looks.
    public static var guestExecutable: String {
        let environment = ProcessInfo.processInfo.environment
        let home = environment["THAW_HOME"] ?? (getuid() == 0 ? "/var/lib/thaw" : (environment["HOME"] ?? "") + "/.local/share/thaw")
        return home + "/vm/thaw-guest"
    }

    /// The `thaw` executable built beside the test bundle.
    public static var thawExecutable: String { builtExecutable("thaw") }

    /// The `thaw-bench` executable built beside the test bundle (its load generator).
    public static var thawBenchExecutable: String { builtExecutable("thaw-bench") }

    static func builtExecutable(_ name: String) -> String {
        let bundle = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: bundle).deletingLastPathComponent().appendingPathComponent(name).path
    }

    /// Runs the `thaw` command with `environment` added to this process's.
    @discardableResult
    public static func thaw(_ arguments: [String], environment: [String: String] = [:], check: Bool = true) throws -> CommandResult {
        try launch(thawExecutable, arguments, environment: environment, input: nil, check: check)
    }

    /// Where the corpus of real images is (built by scripts/corpus.sh).
    public static var corpus: String {
        ProcessInfo.processInfo.environment["THAW_CORPUS"] ?? "/var/cache/thaw-corpus"
    }
}
