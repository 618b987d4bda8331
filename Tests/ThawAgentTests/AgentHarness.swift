import Foundation
import Testing
import ThawImage
import ThawPush
import ThawSeal
import ThawStore
import ThawTestSupport

/// A pushed sample image in a directory store, its pulled copy, and `thaw` agents run as real
/// processes against that store.
struct AgentHarness {
    let dir: String
    let manifestID: String
    let pulled: String
    let storedChunks: Int

    var store: String { dir + "/store" }
    var keys: String { dir + "/keys" }
    var storeArguments: [String] { ["--store", store, "--keys", keys] }
    var recordPath: String { store + "/roots/\(RootID.initial)/records/default/\(manifestID)" }

    /// Pushes the "full" sample image with 64 KiB chunks (so it has many chunks) and pulls it.
    init(_ dir: String) async throws {
        self.dir = dir
        try Fixtures.make("full", in: dir + "/oci")
        let store = try DirectoryStore(path: dir + "/store", create: true)
        var options = PushOptions()
        options.chunkSize = 64 * 1024
        let report = try await Pusher(store: store, keys: LocalKeyProvider(directory: dir + "/keys"), options: options)
            .push(try Image.open(.ociLayout(path: dir + "/oci", tag: "full")))
        manifestID = report.manifestID
        storedChunks = report.header.chunkCount - report.progress.chunksZero
        pulled = dir + "/pulled.ext4"
        try TestSupport.thaw(["pull", manifestID, "-o", pulled, "--store", dir + "/store", "--keys", dir + "/keys"])
    }

    /// Pushes one more fixture image into the same store and pulls it: its manifest id and image.
    func pushAnother(_ variant: String) async throws -> (id: String, pulled: String) {
        try Fixtures.make(variant, in: dir + "/oci")
        let store = try DirectoryStore(path: self.store, create: false)
        let report = try await Pusher(store: store, keys: LocalKeyProvider(directory: keys))
            .push(try Image.open(.ociLayout(path: dir + "/oci", tag: variant)))
        let pulled = dir + "/\(variant).ext4"
        try TestSupport.thaw(["pull", report.manifestID, "-o", pulled] + storeArguments)
        return (report.manifestID, pulled)
    }

    /// A running `thaw` command (agent, serve or mount) and the ports it was given.
    final class Running: @unchecked Sendable {
        let process: BackgroundProcess
        let log: String
        let nbdPort: Int?
        let controlPort: Int?

        init(process: BackgroundProcess, log: String, nbdPort: Int?, controlPort: Int?) {
            self.process = process
            self.log = log
            self.nbdPort = nbdPort
            self.controlPort = controlPort
        }

        var logText: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
        var control: String { "127.0.0.1:\(controlPort!)" }
        func uri(_ export: String) -> String { "nbd://127.0.0.1:\(nbdPort!)/\(export)" }
    }

    /// Starts `thaw agent` on free ports with a private cache, and waits until it listens.
    func startAgent(_ extra: [String] = [], name: String = "agent") throws -> Running {
        let nbd = try TestSupport.freePort()
        let control = try TestSupport.freePort()
        let log = dir + "/\(name).log"
        let process = try BackgroundProcess(TestSupport.thawExecutable, [
            "agent", "--nbd", "127.0.0.1:\(nbd)", "--control", "127.0.0.1:\(control)",
            "--cache-dir", dir + "/\(name)-cache", "--memory-cache", "64M", "--disk-cache", "64M", "--log-level", "debug",
        ] + storeArguments + extra, logPath: log)
        let running = Running(process: process, log: log, nbdPort: nbd, controlPort: control)
        try TestSupport.waitForPort(control, what: "thaw agent (log: \(log))")
        try TestSupport.waitForPort(nbd, what: "thaw agent's NBD server")
        return running
    }


    /// The value of the first sample of `metric` whose labels contain `labels`, from Prometheus text.
    static func sample(_ text: String, _ metric: String, labels: String = "") -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(metric) && !line.hasPrefix("#") {
            let name = line.prefix { $0 != " " && $0 != "{" }
            guard name == metric, labels.isEmpty || line.contains(labels) else { continue }
            return line.split(separator: " ").last.flatMap { Double($0) }
        }
        return nil
    }

    /// Polls `condition` every 100 ms for up to `seconds`.
    static func eventually(_ seconds: Double = 20, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try condition() { return true }
            usleep(100_000)
        }
        return try condition()
    }
}
