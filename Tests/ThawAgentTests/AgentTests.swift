import Foundation
import Testing
import ThawAgent
import ThawTestSupport

/// `thaw agent`, `thaw serve` and `thaw mount` as real processes, read by real clients: libnbd's
/// nbdcopy and nbdinfo, qemu-img, the kernel's loop device over FUSE; the control endpoint,
/// Prometheus metrics, recording, prefetch and SIGTERM.
@Suite(.serialized, .timeLimit(.minutes(10))) struct AgentTests {
    @Test func nbdClientsReadThePulledImageAndTheStartIsRecorded() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let harness = try await AgentHarness(dir)
            // The recording must outlast a slow machine's pauses between the steps below.
            let agent = try harness.startAgent(["--record-idle", "600"])
            let copy = dir + "/copy.ext4"
            let copied = try await TestSupport.runOnOwnThread("nbdcopy", [agent.uri(harness.manifestID), copy])
            #expect(copied.status == 0, "\(copied.output)\n\(agent.logText)")
            #expect(try TestSupport.contentsEqual(copy, harness.pulled))
            // A unique prefix names the same image; qemu-img sees it byte-identical too.
            let compared = try await TestSupport.runOnOwnThread("qemu-img", ["compare", "-f", "raw", "-F", "raw",
                                                                   agent.uri(String(harness.manifestID.prefix(12))), harness.pulled])
            #expect(compared.status == 0, "\(compared.output)")
            let info = try await TestSupport.runOnOwnThread("nbdinfo", [agent.uri(harness.manifestID)])
            #expect(info.output.contains("read_only: true"), "\(info.output)")
            #expect(info.output.contains("Thaw image \(harness.manifestID)"), "\(info.output)")
            // Another manifest, served at the same time through the same cache.
            let other = try await harness.pushAnother("shared-a")
            async let first = TestSupport.runOnOwnThread("nbdcopy", [agent.uri(harness.manifestID), dir + "/first.ext4"])
            async let second = TestSupport.runOnOwnThread("nbdcopy", [agent.uri(other.id), dir + "/second.ext4"])
            let (firstStatus, secondStatus) = try await (first.status, second.status)
            #expect(firstStatus == 0 && secondStatus == 0)
            #expect(try TestSupport.contentsEqual(dir + "/first.ext4", harness.pulled))
            #expect(try TestSupport.contentsEqual(dir + "/second.ext4", other.pulled))
            try FileManager.default.removeItem(atPath: dir + "/second.ext4")

            // An export that names no manifest is refused, and the agent goes on serving.
            let unknown = try await TestSupport.runOnOwnThread("nbdinfo", [agent.uri("0123456789abcdef")])
            #expect(unknown.status != 0)
            let list = try await TestSupport.runOnOwnThread("nbdinfo", ["--list", "nbd://127.0.0.1:\(agent.nbdPort!)"])
            #expect(list.output.contains(harness.manifestID), "\(list.output)")

            // Stats and metrics report what the copies read.
            let stats = try TestSupport.thaw(["stats", "--agent", agent.control])
            #expect(stats.output.contains(harness.manifestID))
            #expect(stats.output.contains("record: \(harness.storedChunks) chunks, recording"), "\(stats.output)")
            let json = try TestSupport.thaw(["stats", "--agent", agent.control, "--json"])
            let decoded = try JSONDecoder().decode(AgentStatistics.self, from: Data(json.output.utf8))
            let image = try #require(decoded.images.first { $0.id == harness.manifestID })
            #expect(decoded.images.count == 2)
            #expect(image.reads.originFetches == harness.storedChunks, "each stored chunk fetched once")
            #expect(image.reads.chunksFromL1 > 0, "the second copy read from L1")
            let metrics = try TestSupport.run("curl", ["-sf", "http://\(agent.control)/metrics"]).output
            #expect((AgentHarness.sample(metrics, "thaw_reads_total") ?? 0) > 0, "\(metrics)")
            // Pieces that waited for the origin: read-ahead may have fetched the rest before their readers came.
            #expect((AgentHarness.sample(metrics, "thaw_tier_reads_total", labels: "tier=\"origin\"") ?? 0) > 0)
            #expect((AgentHarness.sample(metrics, "thaw_tier_read_duration_seconds_count", labels: "tier=\"memory\"") ?? 0) > 0)
            #expect(AgentHarness.sample(metrics, "thaw_origin_fetches_total", labels: "kind=\"demand\"") != nil)
            #expect((AgentHarness.sample(metrics, "thaw_l1_bytes", labels: "tier=\"disk\"") ?? 0) > 0)
            #expect(AgentHarness.sample(metrics, "thaw_images_served") == 2)

            // The start is over: its record is saved next to the manifest, once.
            #expect(!FileManager.default.fileExists(atPath: harness.recordPath))
            let started = try TestSupport.thaw(["started", harness.manifestID, "--agent", agent.control])
            #expect(started.output.contains("\(harness.storedChunks) chunks"), "\(started.output)")
            #expect(FileManager.default.fileExists(atPath: harness.recordPath))
            let again = try TestSupport.thaw(["started", harness.manifestID, "--agent", agent.control])
            #expect(again.output.contains("nothing to save"))
            let missing = try TestSupport.thaw(["started", "ffffffffffff", "--agent", agent.control], check: false)
            #expect(missing.status != 0 && missing.output.contains("not served"), "\(missing.output)")

            // SIGTERM drains and exits cleanly.
            #expect(agent.process.stop(grace: 20) == 0, "\(agent.logText)")
            #expect(agent.logText.contains("agent stopped"))
        }
    }

    @Test func aSecondStartPrefetchesWhatTheFirstRead() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let harness = try await AgentHarness(dir)
            // First start: read part of the image, then let the recording go idle and save itself.
            let first = try harness.startAgent(["--record-idle", "0.5"], name: "first")
            let part = dir + "/part.raw"
            let read = try await TestSupport.runOnOwnThread("qemu-img", ["convert", "-O", "raw", "--image-opts",
                "driver=raw,size=1048576,file.driver=nbd,file.server.type=inet,file.server.host=127.0.0.1,file.server.port=\(first.nbdPort!),file.export=\(harness.manifestID)",
                part])
            #expect(read.status == 0, "\(read.output)")
            #expect(AgentHarness.eventually { FileManager.default.fileExists(atPath: harness.recordPath) }, "\(first.logText)")
            #expect(first.process.stop(grace: 20) == 0)

            // `thaw inspect --record` shows what that start read: the first MiB's blocks, no others.
            let inspected = try TestSupport.thaw(["inspect", harness.manifestID, "--record", "--json"] + harness.storeArguments)
            let object = try #require(try JSONSerialization.jsonObject(with: Data(inspected.output.utf8)) as? [String: Any])
            let record = try #require(object["record"] as? [String: Any], "\(inspected.output)")
            let runs = try #require(record["blocks"] as? [[Int]])
            let blocksRead = Set(runs.flatMap { $0[0]..<($0[0] + $0[1]) })
            #expect(blocksRead == Set(0..<256), "\(runs)")
            let chunksRead = try #require(record["chunks"] as? [Int])
            let chunkSize = try #require(object["chunkSize"] as? Int)
            #expect(!chunksRead.isEmpty && chunksRead.allSatisfy { $0 < 1_048_576 / chunkSize }, "zero chunks are left out: \(chunksRead)")
            let text = try TestSupport.thaw(["inspect", harness.manifestID, "--record"] + harness.storeArguments).output
            #expect(text.contains("256 blocks (1.0 MiB"), "\(text)")
            let keyless = try TestSupport.thaw(["inspect", harness.manifestID, "--record", "--store", harness.store, "--keys", dir + "/none"], check: false)
            #expect(keyless.status != 0 && keyless.output.contains("no key for tenant"), "\(keyless.output)")

            // Second start: a cold cache and a slow origin; the record is prefetched at once.
            let second = try harness.startAgent([harness.manifestID, "--origin-latency", "20", "--disk-cache", "0"], name: "second")
            var image: AgentStatistics.Image?
            #expect(try AgentHarness.eventually {
                let json = try TestSupport.thaw(["stats", "--agent", second.control, "--json"]).output
                image = try JSONDecoder().decode(AgentStatistics.self, from: Data(json.utf8)).images.first
                return image?.prefetchFinished == true
            })
            let recorded = try #require(image?.prefetchChunks)
            #expect(recorded > 0 && recorded < harness.storedChunks, "only the first MiB's chunks were read")
            #expect(image?.recordedChunks == nil, "a manifest with a record is not recorded again")
            #expect(image?.reads.prefetchFetches == recorded)
            let again = try await TestSupport.runOnOwnThread("qemu-img", ["convert", "-O", "raw", "--image-opts",
                "driver=raw,size=1048576,file.driver=nbd,file.server.type=inet,file.server.host=127.0.0.1,file.server.port=\(second.nbdPort!),file.export=\(harness.manifestID)",
                dir + "/again.raw"])
            #expect(again.status == 0)
            #expect(try TestSupport.contentsEqual(part, dir + "/again.raw"))
            let json = try TestSupport.thaw(["stats", "--agent", second.control, "--json"]).output
            let after = try #require(try JSONDecoder().decode(AgentStatistics.self, from: Data(json.utf8)).images.first)
            #expect(after.reads.prefetchHits == recorded, "every recorded chunk was read from the prefetch")
            #expect(after.reads.originFetches - after.reads.prefetchFetches - after.reads.readAheadFetches == 0,
                    "the start needed no demand fetch")
            #expect(second.process.stop(grace: 20) == 0)
        }
    }

    @Test func theNextAgentReadsWhatTheFirstFetchedFromL2() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let harness = try await AgentHarness(dir)
            let servers = try (0..<5).map { _ in try MemcachedServer() }
            // A generous lookup timeout: this checks what L2 holds, and a lookup that times out
            // while other suites keep both cores busy would go to the origin instead.
            let l2 = ["--l2", servers.map { "127.0.0.1:\($0.port)" }.joined(separator: ","), "--l2-timeout", "5000"]
            func statistics(_ agent: AgentHarness.Running) throws -> AgentStatistics {
                let json = try TestSupport.thaw(["stats", "--agent", agent.control, "--json"]).output
                return try JSONDecoder().decode(AgentStatistics.self, from: Data(json.utf8))
            }

            // The first agent fetches every chunk from the origin and writes each back to L2.
            let first = try harness.startAgent(l2, name: "first")
            let copied = try await TestSupport.runOnOwnThread("nbdcopy", [first.uri(harness.manifestID), dir + "/first.ext4"])
            #expect(copied.status == 0, "\(copied.output)\n\(first.logText)")
            #expect(try TestSupport.contentsEqual(dir + "/first.ext4", harness.pulled))
            #expect(try AgentHarness.eventually { try statistics(first).l2?.chunksStored == harness.storedChunks }, "\(first.logText)")
            let firstStats = try statistics(first)
            #expect(firstStats.l2?.misses == harness.storedChunks && firstStats.l2?.hits == 0)
            #expect(firstStats.images.first?.reads.originFetches == harness.storedChunks)
            #expect(try TestSupport.thaw(["stats", "--agent", first.control]).output.contains("L2: 5 nodes, 4 data + 1 parity shards"))
            #expect(first.process.stop(grace: 20) == 0, "\(first.logText)")

            // The next agent, with an empty L1, reads the image from L2 alone.
            let next = try harness.startAgent(l2, name: "next")
            let again = try await TestSupport.runOnOwnThread("nbdcopy", [next.uri(harness.manifestID), dir + "/next.ext4"])
            #expect(again.status == 0, "\(again.output)\n\(next.logText)")
            #expect(try TestSupport.contentsEqual(dir + "/next.ext4", harness.pulled))
            let nextStats = try statistics(next)
            let image = try #require(nextStats.images.first)
            #expect(image.reads.originFetches == 0, "the origin was asked for chunks L2 held")
            #expect(image.reads.l2Hits == harness.storedChunks && image.reads.l2Misses == 0)
            #expect(nextStats.l2?.hits == harness.storedChunks && nextStats.l2?.latencyP50Microseconds != nil)
            let metrics = try TestSupport.run("curl", ["-sf", "http://\(next.control)/metrics"]).output
            #expect(AgentHarness.sample(metrics, "thaw_l2_lookups_total", labels: "result=\"hit\"") == Double(harness.storedChunks), "\(metrics)")
            #expect((AgentHarness.sample(metrics, "thaw_tier_reads_total", labels: "tier=\"l2\"") ?? 0) > 0)
            #expect((AgentHarness.sample(metrics, "thaw_l2_lookup_duration_seconds_count") ?? 0) >= Double(harness.storedChunks))
            #expect(AgentHarness.sample(metrics, "thaw_l2_shards_missing_or_late_total") != nil)
            #expect(next.process.stop(grace: 20) == 0)

            // Bad L2 settings are refused at start, naming what is wrong.
            let malformed = try TestSupport.thaw(["agent", "--l2", "127.0.0.1"] + harness.storeArguments, check: false)
            #expect(malformed.status != 0 && malformed.output.contains("--l2"), "\(malformed.output)")
            let few = try TestSupport.thaw(["agent", "--l2", "127.0.0.1:\(servers[0].port)", "--control", "none",
                                            "--nbd", "none", "--disk-cache", "0"] + harness.storeArguments, check: false)
            #expect(few.status != 0 && few.output.contains("need as many L2 nodes"), "\(few.output)")
            let small = try MemcachedServer(itemSize: "64k")
            let nodes = servers.prefix(4).map { "127.0.0.1:\($0.port)" } + ["127.0.0.1:\(small.port)"]
            let tooSmall = try TestSupport.thaw(["agent", "--l2", nodes.joined(separator: ","), "--control", "none",
                                                 "--nbd", "none", "--disk-cache", "0"] + harness.storeArguments, check: false)
            #expect(tooSmall.status != 0 && tooSmall.output.contains("127.0.0.1:\(small.port)") && tooSmall.output.contains("-I"),
                    "\(tooSmall.output)")
        }
    }

    @Test func mountShowsTheImageAsAFileTheKernelCanLoopMount() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let harness = try await AgentHarness(dir)
            let mountPoint = dir + "/fuse"
            try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
            let log = dir + "/mount.log"
            let process = try BackgroundProcess(TestSupport.thawExecutable, ["mount", harness.manifestID, mountPoint,
                                                "--disk-cache", "0"] + harness.storeArguments, logPath: log)
            let file = mountPoint + "/\(harness.manifestID).ext4"
            defer { process.stop() }
            #expect(AgentHarness.eventually { FileManager.default.fileExists(atPath: file) },
                    "\((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
            #expect(try TestSupport.contentsEqual(file, harness.pulled))

            let loop = try TestSupport.run("losetup", ["-r", "-f", "--show", file]).output.trimmingCharacters(in: .whitespacesAndNewlines)
            defer { _ = try? TestSupport.run("losetup", ["-d", loop], check: false) }
            let viaFuse = dir + "/via-fuse"
            try FileManager.default.createDirectory(atPath: viaFuse, withIntermediateDirectories: true)
            try TestSupport.run("mount", ["-o", "ro", "-t", "ext4", loop, viaFuse])
            defer { TestSupport.unmount(viaFuse) }
            // The files read through FUSE equal the image's source tree.
            let source = try Fixtures.umociUnpack(dir + "/oci", tag: "full", into: dir + "/bundle")
            #expect(try Fixtures.compareTrees(expected: source, actual: viaFuse, options: ["--mtime"]) == nil)
            #expect(TestSupport.unmount(viaFuse))
            try TestSupport.run("losetup", ["-d", loop])

            #expect(process.stop(grace: 20) == 0)
            let mounts = try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)
            #expect(!mounts.contains(mountPoint), "the FUSE mount is gone after SIGTERM")
        }
    }

    @Test func badReferencesGiveClearErrorsAndStopNothing() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let harness = try await AgentHarness(dir)
            let serve = try TestSupport.thaw(["serve", "deadbeefdeadbeef", "--nbd", "127.0.0.1:\(try TestSupport.freePort())",
                                              "--disk-cache", "0"] + harness.storeArguments, check: false)
            #expect(serve.status != 0)
            #expect(serve.output.contains("no manifest deadbeefdeadbeef"), "\(serve.output)")
            let mount = try TestSupport.thaw(["mount", harness.manifestID, dir + "/missing", "--disk-cache", "0"] + harness.storeArguments,
                                             check: false)
            #expect(mount.status != 0)
            #expect(mount.output.contains(dir + "/missing"), "\(mount.output)")
            let size = try TestSupport.thaw(["agent", "--memory-cache", "lots"] + harness.storeArguments, check: false)
            #expect(size.status != 0 && size.output.contains("--memory-cache"), "\(size.output)")
            let drain = try TestSupport.thaw(["agent", "--drain-timeout", "-1"] + harness.storeArguments, check: false)
            #expect(drain.status != 0 && drain.output.contains("--drain-timeout"), "\(drain.output)")
        }
    }
}
