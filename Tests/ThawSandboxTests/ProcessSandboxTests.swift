import Foundation
import Testing
import ThawImage
import ThawSample
import ThawTestSupport

/// `thaw run` end to end in the process sandbox: real namespaces, loop devices, ext4, overlayfs
/// and FUSE. Serialized: each run mounts and starts processes, and two cores are shared.
@Suite(.serialized) struct ProcessSandboxTests {
    static let probe = """
        #!/bin/sh
        read -r event
        echo "to the log" >&2
        echo written > /tmp/scratch && echo changed > /home/app/changed
        nets=$(grep -c : /proc/net/dev)
        procs=$(ls -d /proc/[0-9]* | wc -l)
        # The uids of the init's live threads (its first thread may have ended, and keeps the
        # uid it had then).
        # The uids of the init's threads, each once.
        initUIDs=$(for t in /proc/1/task/*; do grep '^Uid:' $t/status; done | sort -u | while read -r _ uid _; do printf '%s ' "$uid"; done)
        if kill -0 1 2>/dev/null; then signals=yes; else signals=no; fi
        printf '{"event":%s,"uid":"%s","gid":"%s","host":"%s","pwd":"%s","pid":%s,"nets":%s,"procs":%s,"greeting":"%s","tmp":"%s","home":"%s","init":"%s","initUIDs":"%s","signalsInit":"%s"}\\n' \\
          "$event" "$(id -u)" "$(id -g)" "$(hostname)" "$(pwd)" "$$" "$nets" "$procs" "$GREETING" \\
          "$(cat /tmp/scratch)" "$(cat /home/app/changed)" "$(cat /proc/1/comm)" "${initUIDs% }" "$signals"
        """

    @Test func aHandlerRunsIsolatedAsTheImageSays() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let harness = try RunHarness(dir)
            let id = try await harness.pushBusybox(tag: "probe", handler: Self.probe, execution: .init(
                user: "app", env: ["GREETING=hello"], entrypoint: ["/function/handler"], workingDir: "/home/app"))
            let result = try await harness.run([id, "--event", #"{"n": 42}"#] + harness.commonArguments)
            #expect(result.status == 0, "\(result.log)")
            let answer = try JSONSerialization.jsonObject(with: Data(result.response.utf8)) as? [String: Any]
            #expect((answer?["event"] as? [String: Any])?["n"] as? Int == 42)
            #expect(answer?["uid"] as? String == "1000")
            #expect(answer?["gid"] as? String == "1000")
            #expect(answer?["host"] as? String == "thaw")
            #expect(answer?["pwd"] as? String == "/home/app")
            #expect(answer?["greeting"] as? String == "hello")
            // A PID namespace of its own (Thaw's init is 1), no network but loopback, and a
            // writable overlay over the read-only image.
            #expect((answer?["pid"] as? Int ?? 999) < 50)
            #expect(answer?["init"] as? String == "thaw")
            #expect(answer?["nets"] as? Int == 1)
            #expect((answer?["procs"] as? Int ?? 99) <= 8)
            #expect(answer?["tmp"] as? String == "written")
            #expect(answer?["home"] as? String == "changed")
            // Not preloading, the init's threads became the image's user too (all but its main
            // thread, which libdispatch parks in a way glibc's setuid passes over), and the
            // handler cannot signal it.
            #expect((answer?["initUIDs"] as? String)?.split(separator: " ").contains("1000") == true, "\(result.response)")
            #expect(answer?["signalsInit"] as? String == "no")
            #expect(result.log.contains("to the log"))
            for step in ["manifest fetched", "device ready", "root mounted", "handler started", "response received"] {
                #expect(result.log.contains(step), "breakdown lacks \(step): \(result.log)")
            }
            #expect(result.log.contains("recorded:"))
            // Relaid, the image's init preloads it, and stays root to open its files by inode:
            // the handler is still the image's user, alone in its namespaces.
            let relaid = try await TestSupport.thawOnOwnThread(["relayout", id, "--store", harness.store, "--keys", dir + "/keys"])
            let line = try #require(relaid.output.split(separator: "\n").first { $0.contains(" again as ") }, "\(relaid.output)")
            let relaidID = String(try #require(line.components(separatedBy: " again as ").last?.split(separator: " ").first))
            let again = try await harness.run([relaidID, "--event", #"{"n": 43}"#] + harness.commonArguments)
            #expect(again.status == 0, "\(again.log)")
            #expect(again.log.contains("sandbox: preloading "), "\(again.log)")
            let second = try JSONSerialization.jsonObject(with: Data(again.response.utf8)) as? [String: Any]
            #expect((second?["event"] as? [String: Any])?["n"] as? Int == 43)
            #expect(second?["uid"] as? String == "1000")
            #expect(second?["gid"] as? String == "1000")
            #expect(second?["init"] as? String == "thaw")
            #expect(second?["initUIDs"] as? String == "0", "the preloading init stays root: \(again.response)")
            #expect(second?["signalsInit"] as? String == "no", "the handler cannot signal its root init")
            #expect((second?["procs"] as? Int ?? 99) <= 8)
            #expect(await harness.leftoversAfterSettling() == [])
        }
    }

    /// The manifest function `name` points at, from `thaw functions list --json`.
    static func namedManifest(_ name: String, store: [String]) throws -> String {
        let listed = try TestSupport.thaw(["functions", "list", "--json"] + store).output
        var found: String?
        for line in listed.split(separator: "\n") {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            if object?["name"] as? String == name { found = object?["manifest"] as? String }
        }
        return try #require(found, "no function \(name) in: \(listed)")
    }

    @Test func aFunctionNameStartsTheManifestItPointsAt() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let harness = try RunHarness(dir)
            let layout = harness.layout
            let store = ["--store", harness.store, "--keys", dir + "/keys"]
            // v1 is laid out again after its first start, and the name moves to the result;
            // --no-relayout leaves v2's name where the push put it; v3 has a memory snapshot (an
            // object where one is kept), which a new layout would leave behind.
            for version in ["v1", "v2", "v3"] {
                try await TestSupport.onOwnThread {
                    _ = try FunctionImage.writeBusybox(to: layout, tag: version, handler: "#!/bin/sh\necho \(version)\n",
                                                       execution: .init(cmd: ["/function/handler"]))
                }
                let pushed = try TestSupport.thaw(["push", "oci:\(layout):\(version)", "--name", "greeter"] + store)
                #expect(pushed.output.contains("name: greeter"), "\(pushed.output)")
                let pushedID = try Self.namedManifest("greeter", store: store)
                var options = ["--json"]
                if version == "v2" { options.append("--no-relayout") }
                if version == "v3" {
                    let snapshot = harness.store + "/roots/r0001/snapshots/default/" + pushedID
                    try FileManager.default.createDirectory(atPath: (snapshot as NSString).deletingLastPathComponent,
                                                            withIntermediateDirectories: true)
                    try Data([0]).write(to: URL(fileURLWithPath: snapshot))
                    options.append(contentsOf: ["--sandbox", "process"])
                }
                let relayout = version == "v1"
                let result = try await harness.run(["greeter"] + options + harness.commonArguments)
                #expect(result.status == 0, "\(result.log)")
                #expect(result.response == "\(version)\n", "the name starts the manifest it points at now")
                let named = try Self.namedManifest("greeter", store: store)
                #expect(result.log.contains("laid out again: greeter → \(named)") == relayout, "\(result.log)")
                #expect(result.log.contains("not laid out again: greeter's manifest \(pushedID) has a memory snapshot") == (version == "v3"),
                        "\(result.log)")
                #expect((named != pushedID) == relayout)
                #expect(result.log.split(separator: "\n").last?.hasPrefix("{") == true, "the breakdown stays the last line")
                if relayout {
                    // The relaid manifest's start prefetches its translated record and is not
                    // laid out again.
                    let again = try await harness.run(["greeter", "--json"] + harness.commonArguments)
                    #expect(again.response == "\(version)\n")
                    #expect(!again.log.contains("laid out again"), "\(again.log)")
                    let breakdown = try #require(again.log.split(separator: "\n").last { $0.hasPrefix("{") })
                    let object = try JSONSerialization.jsonObject(with: Data(breakdown.utf8)) as? [String: Any]
                    #expect(object?["manifest"] as? String == named)
                    #expect((object?["prefetchChunks"] as? Int ?? 0) > 0, "\(breakdown)")
                }
            }
            try TestSupport.thaw(["functions", "rm", "greeter"] + store)
            let gone = try await harness.run(["greeter"] + harness.commonArguments)
            #expect(gone.status != 0 && gone.log.contains("no function named greeter"), "\(gone.log)")
            #expect(await harness.leftoversAfterSettling() == [])
        }
    }

    @Test func thePythonCorpusImageAnswersAndTheSecondStartPrefetches() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let harness = try RunHarness(dir)
            let handler = """
                import json, sys, http.client
                event = json.load(sys.stdin)
                print(json.dumps({"echo": event, "client": http.client.__name__}))
                """
            let layout = try await harness.corpusFunction(tag: "py-echo", handler: handler)
            let reference = ImageReference.ociLayout(path: layout, tag: "py-echo")
            guard case .ociLayout(let path, let tag) = reference else { Issue.record("not a layout"); return }
            let first = try await harness.run(["oci:\(path):\(tag ?? "")", "--event", #"{"a": [1, 2]}"#] + harness.commonArguments)
            #expect(first.status == 0, "\(first.log)")
            let answer = try JSONSerialization.jsonObject(with: Data(first.response.utf8)) as? [String: Any]
            #expect((answer?["echo"] as? [String: Any])?["a"] as? [Int] == [1, 2])
            #expect(answer?["client"] as? String == "http.client")
            #expect(first.log.contains("pushed in"))
            #expect(first.log.contains("recorded:"))
            // The record is in the store now: a start with a cold cache prefetches it.
            let id = try #require(first.log.split(separator: "\n").first { $0.hasPrefix("start of ") }?
                .split(separator: " ")[2])
            try FileManager.default.removeItem(atPath: dir + "/cache")
            let second = try await harness.run([String(id), "--event", "{}"] + harness.commonArguments)
            #expect(second.status == 0, "\(second.log)")
            #expect(second.response.contains(#""echo": {}"#))
            #expect(second.log.contains("prefetch:"), "\(second.log)")
            // The recorded blocks were loaded into the image file's page cache ahead of the handler.
            let warmed = second.log.split(separator: "\n").first { $0.contains("page cache: ") }
                .flatMap { Int($0.split(separator: "page cache: ")[1].split(separator: " ")[0]) }
            #expect((warmed ?? 0) > 0, "\(second.log)")
            // Laid out again around the recorded start: the same answer from fewer chunks, and
            // the new manifest's first start prefetches.
            let relaid = try await TestSupport.thawOnOwnThread(["relayout", String(id), "--store", harness.store, "--keys", dir + "/keys"])
            let line = try #require(relaid.output.split(separator: "\n").first { $0.contains(" again as ") }, "\(relaid.output)")
            let newID = String(try #require(line.components(separatedBy: " again as ").last?.split(separator: " ").first))
            try FileManager.default.removeItem(atPath: dir + "/cache")
            let third = try await harness.run([newID, "--event", #"{"b": 3}"#] + harness.commonArguments)
            #expect(third.status == 0, "\(third.log)")
            #expect(third.response.contains(#""echo": {"b": 3}"#), "\(third.response)")
            #expect(third.log.contains("prefetch:"), "\(third.log)")
            // Its init loaded the record into the mounted image's caches as the handler started.
            let preloaded = third.log.split(separator: "\n").first { $0.contains("sandbox: preloading ") }
                .flatMap { Int($0.split(separator: "sandbox: preloading ")[1].split(separator: " ")[0]) }
            #expect((preloaded ?? 0) > 0, "\(third.log)")
            // Its record is a few long ranges, loaded whole: the reads that reached Thaw are
            // mostly the warmer's, far longer than the 4 KiB pages a loop device asks for one by
            // one when the page cache misses.
            let reads = try #require(third.log.split(separator: "\n").first { $0.contains("reads: ") }, "\(third.log)")
            let fields = reads.split(separator: "reads: ")[1].split(separator: " ")
            let count = try #require(Double(fields[0])), mebibytes = try #require(Double(fields[1].dropFirst()))
            #expect(mebibytes * 1_048_576 / count >= 16 * 1024, "\(third.log)")
            func originChunks(_ log: String) -> Int? {
                log.split(separator: "\n").first { $0.contains("origin: ") }
                    .flatMap { Int($0.split(separator: "origin: ")[1].split(separator: " ")[0]) }
            }
            let before = try #require(originChunks(first.log))
            let after = try #require(originChunks(third.log))
            #expect(after < before, "the relaid start fetched \(after) chunks, the first \(before)")
            #expect(await harness.leftoversAfterSettling() == [])
        }
    }

    @Test(arguments: [
        ("exits", "#!/bin/sh\necho bad input >&2\nexit 3\n", [String](), "the handler exited with status 3: bad input"),
        ("hangs", "#!/bin/sh\nsleep 60\n", ["--timeout", "1"], "did not answer within 1 s"),
        ("floods", "#!/bin/sh\nyes\n", ["--response-limit", "64K"], "exceeds the limit of 65536 bytes"),
    ])
    func failingHandlersGiveClearErrorsAndLeaveNothing(name: String, handler: String, options: [String], message: String) async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let harness = try RunHarness(dir)
            let id = try await harness.pushBusybox(tag: name, handler: handler, execution: .init(cmd: ["/function/handler"]))
            let result = try await harness.run([id] + options + harness.commonArguments)
            #expect(result.status != 0)
            #expect(result.log.contains(message), "\(result.log)")
            #expect(await harness.leftoversAfterSettling() == [])
        }
    }

    @Test func anImageWithoutAHandlerOrAMissingProgramIsRefused() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let harness = try RunHarness(dir)
            let id = try await harness.pushBusybox(tag: "none", handler: "#!/bin/sh\n", execution: .init(env: ["A=1"]))
            let none = try await harness.run([id] + harness.commonArguments)
            #expect(none.status != 0)
            #expect(none.log.contains("neither Entrypoint nor Cmd"), "\(none.log)")
            let missing = try await harness.run([id] + harness.commonArguments + ["--", "/bin/not-there"])
            #expect(missing.status != 0)
            #expect(missing.log.contains("/bin/not-there is not an executable file in the image"), "\(missing.log)")
            let notInPath = try await harness.run([id] + harness.commonArguments + ["--", "python3"])
            #expect(notInPath.log.contains("python3 is not in the image's PATH"), "\(notInPath.log)")
            #expect(await harness.leftoversAfterSettling() == [])
        }
    }

    @Test func aStartThatFailsBeforeItsSandboxRunsLeavesNoLaunchedInit() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let harness = try RunHarness(dir)
            _ = try await harness.pushBusybox(tag: "echo", handler: "#!/bin/sh\ncat\n", execution: .init(cmd: ["/function/handler"]))
            // The sandbox's init is launched once the agent runs, before the manifest is found;
            // a manifest that is not there abandons it.
            let missing = String(repeating: "ab", count: 32)
            let result = try await harness.run([missing, "--sandbox", "process"] + harness.commonArguments)
            #expect(result.status != 0)
            #expect(result.log.contains("no manifest \(missing)"), "\(result.log)")
            #expect(await harness.leftoversAfterSettling() == [])
        }
    }

    @Test func anOriginThatFailsDuringTheStartGivesAnErrorAndLeavesNothing() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let harness = try RunHarness(dir)
            let id = try await harness.pushBusybox(tag: "echo", handler: "#!/bin/sh\ncat\n", execution: .init(cmd: ["/function/handler"]))
            // The manifest stays readable; every chunk is gone, as when the object store fails.
            let chunks = try FileManager.default.contentsOfDirectory(atPath: harness.store + "/roots")
                .map { harness.store + "/roots/\($0)/chunks" }
            for path in chunks { try FileManager.default.moveItem(atPath: path, toPath: path + ".away") }
            let result = try await harness.run([id, "--deadline", "2"] + harness.commonArguments)
            #expect(result.status != 0)
            #expect(result.log.contains("cannot mount ext4") || result.log.contains("Input/output error"), "\(result.log)")
            #expect(await harness.leftoversAfterSettling() == [])
        }
    }

    @Test func sigintKillsTheSandboxAndRemovesEverything() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let harness = try RunHarness(dir)
            let id = try await harness.pushBusybox(tag: "slow", handler: "#!/bin/sh\necho started >&2\nsleep 60\n",
                                                   execution: .init(cmd: ["/function/handler"]))
            let log = dir + "/run.log"
            let process = try BackgroundProcess("env", ["THAW_RUNTIME_DIR=" + harness.runtime, TestSupport.thawExecutable, "run", id]
                                                    + harness.commonArguments, logPath: log)
            var started = false
            for _ in 0..<600 where !started {
                try await Task.sleep(for: .milliseconds(50))
                started = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("started")
            }
            #expect(started)
            #expect(!harness.leftovers().isEmpty, "a running sandbox shows up in the leftover check")
            // Admission control: with one start allowed on the host, a second is refused at once.
            let refused = try await harness.run([id, "--max-concurrent-starts", "1"] + harness.commonArguments)
            #expect(refused.status != 0)
            #expect(refused.log.contains("this start is refused (1 refused so far)"), "\(refused.log)")
            kill(process.pid, SIGINT)
            var running = true
            for _ in 0..<400 where running {
                try await Task.sleep(for: .milliseconds(50))
                running = process.isRunning
            }
            #expect(!running, "thaw run did not exit within 20 s of SIGINT")
            process.stop()
            #expect(((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("interrupted"))
            #expect(await harness.leftoversAfterSettling() == [])
        }
    }
}
