import Foundation
import ThawImage
import ThawPush
import ThawSample
import ThawSeal
import ThawStore
import ThawTestSupport

/// A directory store, keys and a private runtime directory for `thaw run` processes, and the
/// checks that a run left nothing behind.
struct RunHarness {
    let dir: String
    /// Unique to this harness: in every mount, loop device and sandbox process a run makes.
    var runtime: String { dir + "/runtime" }
    var store: String { dir + "/store" }
    var layout: String { dir + "/oci" }

    init(_ dir: String) throws {
        self.dir = dir
        try FileManager.default.createDirectory(atPath: runtime, withIntermediateDirectories: true)
    }

    /// Derives image `tag` from the corpus's `py` image by adding `handler` as a Python handler,
    /// in a layout of links to the corpus's blobs: the corpus stays untouched and nothing big is
    /// copied. Returns the layout's path.
    func corpusFunction(tag: String, handler: String) async throws -> String {
        let layout = dir + "/corpus"
        let corpus = TestSupport.corpus + "/oci"
        let blobs = try FileManager.default.contentsOfDirectory(atPath: corpus + "/blobs/sha256")
        try FileManager.default.createDirectory(atPath: layout + "/blobs/sha256", withIntermediateDirectories: true)
        for blob in blobs {
            try FileManager.default.createSymbolicLink(atPath: layout + "/blobs/sha256/" + blob,
                                                       withDestinationPath: corpus + "/blobs/sha256/" + blob)
        }
        for file in ["index.json", "oci-layout"] {
            try FileManager.default.copyItem(atPath: corpus + "/" + file, toPath: layout + "/" + file)
        }
        let marker = "THAW_TEST_MARKER=" + runtime
        // Reading the parent's layers to check them takes a while: off the concurrency pool.
        _ = try await TestSupport.onOwnThread {
            try FunctionImage.appendLayer(
                to: layout, parentTag: "py", newTag: tag,
                files: [(path: "/function/handler.py", contents: Array(handler.utf8), mode: 0o644)],
                execution: .init(env: ["PATH=/usr/local/bin:/usr/bin:/bin", marker], entrypoint: ["python3", "/function/handler.py"]))
        }
        return layout
    }

    /// Store, keys, cache, and an environment entry that marks the handler's processes.
    var commonArguments: [String] {
        ["--store", store, "--keys", dir + "/keys", "--cache-dir", dir + "/cache", "--env", "THAW_TEST_MARKER=" + runtime]
    }

    struct Result {
        var status: Int32
        var response: String
        var log: String
    }

    /// Runs `thaw run` with `arguments` to the end, on a thread of its own.
    func run(_ arguments: [String]) async throws -> Result {
        let executable = TestSupport.thawExecutable
        let environment = ProcessInfo.processInfo.environment.merging(["THAW_RUNTIME_DIR": runtime]) { $1 }
        let all = ["run"] + arguments
        return try await TestSupport.onOwnThread {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = all
            process.environment = environment
            let output = Pipe(), errors = Pipe()
            process.standardOutput = output
            process.standardError = errors
            process.standardInput = FileHandle.nullDevice
            try process.run()
            // Read both to the end at once, so neither pipe fills and blocks the other.
            let logBox = DataBox()
            let reader = Thread { logBox.data = errors.fileHandleForReading.readDataToEndOfFile() }
            reader.start()
            let response = output.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            while !logBox.done { usleep(1000) }
            return Result(status: process.terminationStatus, response: String(decoding: response, as: UTF8.self),
                          log: String(decoding: logBox.data, as: UTF8.self))
        }
    }

    /// What a run left behind that mentions this harness's runtime directory: mounts, loop
    /// devices backed by a file under it, processes whose command line names it.
    func leftovers() -> [String] {
        var found: [String] = []
        let mounts = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        found += mounts.split(separator: "\n").filter { $0.contains(runtime) }.map { "mount: \($0)" }
        let blocks = (try? FileManager.default.contentsOfDirectory(atPath: "/sys/block")) ?? []
        for device in blocks where device.hasPrefix("loop") {
            if let backing = try? String(contentsOfFile: "/sys/block/\(device)/loop/backing_file", encoding: .utf8),
               backing.contains(runtime) {
                found.append("loop device \(device) backed by \(backing)")
            }
        }
        let processes = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        for pid in processes where Int32(pid) != nil && Int32(pid) != getpid() {
            // The init names its work directory (under the runtime directory) in its arguments;
            // handlers carry the runtime directory in their environment (`marker`).
            for file in ["cmdline", "environ"] {
                guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/\(file)") else { continue }
                let text = String(decoding: data.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
                if text.contains(runtime) {
                    found.append("process \(pid): \(text.prefix(120))")
                    break
                }
            }
        }
        let sandboxes = (try? FileManager.default.contentsOfDirectory(atPath: runtime + "/sandboxes")) ?? []
        found += sandboxes.map { "sandbox directory \($0)" }
        return found
    }

    /// Waits up to `seconds` for the teardown the kernel finishes on its own, then reports what is left.
    func leftoversAfterSettling(seconds: Double = 5) async -> [String] {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if leftovers().isEmpty { return [] }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return leftovers()
    }

    /// A busybox image with `handler` as its function, pushed; its manifest id.
    func pushBusybox(tag: String, handler: String, execution: ImageConfiguration.Execution) async throws -> String {
        let layout = self.layout
        try await TestSupport.onOwnThread {
            _ = try FunctionImage.writeBusybox(to: layout, tag: tag, handler: handler, execution: execution)
        }
        return try await push(.ociLayout(path: layout, tag: tag))
    }

    func push(_ reference: ImageReference) async throws -> String {
        let store = try DirectoryStore(path: self.store, create: true)
        let report = try await Pusher(store: store, keys: LocalKeyProvider(directory: dir + "/keys"))
            .push(try Image.open(reference))
        return report.manifestID
    }
}

final class DataBox: @unchecked Sendable {
    private let lock = NSLock()
    private var stored = Data()
    private var finished = false
    var data: Data {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue; finished = true } }
    }
    var done: Bool { lock.withLock { finished } }
}
