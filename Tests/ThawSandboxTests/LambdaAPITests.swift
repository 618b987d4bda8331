import Foundation
import Testing
import ThawLambdaAPI
import ThawMetadata
import ThawSample
import ThawTestSupport

/// `thaw serve-api` checked with the real AWS CLI and boto3, pointed at it with `--endpoint-url`.
@Suite(.serialized) struct LambdaAPITests {
    struct Failed: Error, CustomStringConvertible {
        var description: String
    }

    /// A running `thaw serve-api` on a free port, its store and credentials in `harness.dir`.
    struct API {
        let harness: RunHarness
        let process: BackgroundProcess
        let port: Int
        var endpoint: String { "http://127.0.0.1:\(port)" }
        var credentials: String { harness.dir + "/api-credentials" }
        let log: String

        init(_ harness: RunHarness, options: [String] = [], name: String = "api") throws {
            self.harness = harness
            port = try TestSupport.freePort()
            let keyID = "AKIATHAWTEST00000001"
            try "[default]\naws_access_key_id = \(keyID)\naws_secret_access_key = thaw-test-secret\n"
                .write(toFile: harness.dir + "/api-credentials", atomically: true, encoding: .utf8)
            log = harness.dir + "/\(name).log"
            // Each agent has a cache of its own; the store and the metadata are what they share.
            let cache = name == "api" ? harness.dir + "/cache" : harness.dir + "/cache-\(name)"
            process = try BackgroundProcess("env", [
                "THAW_RUNTIME_DIR=\(harness.runtime)", TestSupport.thawExecutable, "serve-api",
                "--listen", "127.0.0.1:\(port)", "--credentials", harness.dir + "/api-credentials",
                "--store", harness.store, "--keys", harness.dir + "/keys", "--cache-dir", cache,
            ] + options, logPath: log)
            try TestSupport.waitForPort(port, what: "thaw serve-api")
        }

        /// The environment an AWS client needs to sign for this service.
        func environment(secret: String? = nil) throws -> [String: String] {
            var credentials = self.credentials
            if let secret {
                credentials = harness.dir + "/other-credentials"
                try "[default]\naws_access_key_id = AKIATHAWTEST00000001\naws_secret_access_key = \(secret)\n"
                    .write(toFile: credentials, atomically: true, encoding: .utf8)
            }
            return ["AWS_SHARED_CREDENTIALS_FILE": credentials, "AWS_CONFIG_FILE": "/dev/null", "AWS_DEFAULT_REGION": "us-east-1",
                    "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_PROFILE": "default"]
        }

        /// `aws lambda …` against this service.
        @discardableResult
        func aws(_ arguments: [String], secret: String? = nil, check: Bool = true) throws -> TestSupport.CommandResult {
            let result = try TestSupport.runWithEnvironment("aws", ["lambda"] + arguments + ["--endpoint-url", endpoint, "--output", "json"],
                                                            environment: try environment(secret: secret), check: false)
            if check && result.status != 0 {
                let log = (try? String(contentsOfFile: self.log, encoding: .utf8)) ?? ""
                throw Failed(description: "aws lambda \(arguments.joined(separator: " ")): \(result.output)\nservice log:\n\(log)")
            }
            return result
        }

        var logText: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

        /// Whether `condition` holds within `seconds`, asked every 0.1 s.
        func eventually(_ seconds: Double = 60, _ condition: () -> Bool) async -> Bool {
            let deadline = Date().addingTimeInterval(seconds)
            while !condition() {
                guard Date() < deadline else { return false }
                try? await Task.sleep(for: .milliseconds(100))
            }
            return true
        }

        func json(_ result: TestSupport.CommandResult) throws -> [String: Any] {
            let start = try #require(result.output.firstIndex(of: "{"))
            return try #require(try JSONSerialization.jsonObject(with: Data(result.output[start...].utf8)) as? [String: Any])
        }
    }

    @Test func theAWSCLICreatesInvokesUpdatesAndDeletesAFunction() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let harness = try RunHarness(dir)
            for (tag, answer) in [("v1", "one"), ("v2", "two")] {
                _ = try FunctionImage.writeBusybox(
                    to: harness.layout, tag: tag,
                    handler: "#!/bin/sh\necho \"handling with \(tag)\" >&2\nprintf '{\"version\": \"\(answer)\", \"event\": %s}' \"$(cat)\"\n",
                    execution: .init(env: ["THAW_TEST_MARKER=" + harness.runtime], cmd: ["/function/handler"]))
            }
            let api = try API(harness)
            defer { api.process.stop() }

            let created = try api.json(try api.aws([
                "create-function", "--function-name", "greeter", "--package-type", "Image",
                "--code", "ImageUri=oci:\(harness.layout):v1", "--role", "arn:aws:iam::000000000000:role/thaw",
                "--timeout", "20", "--environment", "Variables={GREETING=hello}",
            ]))
            #expect(created["FunctionName"] as? String == "greeter")
            #expect(created["FunctionArn"] as? String == "arn:aws:lambda:us-east-1:000000000000:function:greeter")
            #expect(created["PackageType"] as? String == "Image")
            #expect(created["State"] as? String == "Active")
            #expect(created["Timeout"] as? Int == 20)
            #expect((created["CodeSize"] as? Int ?? 0) > 0)
            let again = try api.aws(["create-function", "--function-name", "greeter", "--package-type", "Image",
                                     "--code", "ImageUri=greeter", "--role", "r"], check: false)
            #expect(again.status != 0 && again.output.contains("ResourceConflictException"), "\(again.output)")

            let payload = dir + "/payload.json"
            try #"{"a": [1, 2]}"#.write(toFile: payload, atomically: true, encoding: .utf8)
            let out = dir + "/out.json"
            let invoked = try api.json(try api.aws(["invoke", "--function-name", "greeter", "--payload", "fileb://\(payload)",
                                                    "--log-type", "Tail", out]))
            #expect(invoked["StatusCode"] as? Int == 200)
            #expect(invoked["FunctionError"] == nil)
            let response = try String(contentsOfFile: out, encoding: .utf8)
            #expect(response == #"{"version": "one", "event": {"a": [1, 2]}}"#, "\(response)")
            let logTail = try #require(Data(base64Encoded: invoked["LogResult"] as? String ?? ""))
            #expect(String(decoding: logTail, as: UTF8.self).contains("handling with v1"))

            // That cold start recorded what it read: the image is laid out again in the background
            // and the function pointed at the result. Its CodeSha256 stays, and its warm instance
            // still serves it.
            #expect(await api.eventually { api.logText.contains(" relaid=") }, "\(api.logText)")
            let pushedID = try #require(created["CodeSha256"] as? String)
            let moved = try TestSupport.thaw(["functions", "list", "--json", "--store", harness.store]).output
            #expect(moved.contains("greeter") && !moved.contains(pushedID), "\(moved)")
            let relaidID = try #require(api.logText.split(separator: "\n").first { $0.contains(" relaid=") }?
                .split(separator: " ").first { $0.hasPrefix("relaid=") }?.dropFirst("relaid=".count))
            #expect(moved.contains(relaidID), "\(moved)")
            let relaid = try TestSupport.thaw(["inspect", String(relaidID), "--store", harness.store]).output
            #expect(relaid.contains("manifest \(relaidID)"), "\(relaid)")
            _ = try api.aws(["invoke", "--function-name", "greeter", "--payload", "fileb://\(payload)", out])
            #expect(try String(contentsOfFile: out, encoding: .utf8) == #"{"version": "one", "event": {"a": [1, 2]}}"#)
            let metrics = try TestSupport.run("curl", ["-sf", api.endpoint + "/metrics"]).output
            #expect(metrics.contains(#"thaw_api_invocations_total{start="warm"} 1"#), "the instance of the pushed image served: \(metrics)")

            let got = try api.json(try api.aws(["get-function", "--function-name", "greeter"]))
            let configuration = try #require(got["Configuration"] as? [String: Any])
            #expect(configuration["CodeSha256"] as? String == pushedID)
            #expect((got["Code"] as? [String: Any])?["ResolvedImageUri"] as? String == "thaw:r0001/\(relaidID)")
            #expect((configuration["Environment"] as? [String: Any])?["Variables"] as? [String: String] == ["GREETING": "hello"])
            #expect((got["Code"] as? [String: Any])?["ImageUri"] as? String == "oci:\(harness.layout):v1")
            let listed = try api.json(try api.aws(["list-functions"]))
            #expect((listed["Functions"] as? [[String: Any]])?.compactMap { $0["FunctionName"] as? String } == ["greeter"])

            let updated = try api.json(try api.aws(["update-function-code", "--function-name", "greeter",
                                                    "--image-uri", "oci:\(harness.layout):v2"]))
            #expect(updated["RevisionId"] as? String == "2")
            #expect(updated["CodeSha256"] as? String != created["CodeSha256"] as? String)
            _ = try api.aws(["invoke", "--function-name", "greeter", "--payload", "fileb://\(payload)", out])
            #expect(try String(contentsOfFile: out, encoding: .utf8).contains(#""version": "two""#))

            // Pointed elsewhere behind the API's back (`thaw push --name`): CodeSha256 follows.
            try TestSupport.thaw(["push", "oci:\(harness.layout):v1", "--name", "greeter", "--store", harness.store, "--keys", dir + "/keys"])
            let repointed = try api.json(try api.aws(["get-function", "--function-name", "greeter"]))
            #expect((repointed["Configuration"] as? [String: Any])?["CodeSha256"] as? String == pushedID)

            // Keys: a wrong secret, and no signature at all, get AWS's answers.
            let forged = try api.aws(["list-functions"], secret: "not-the-secret", check: false)
            #expect(forged.status != 0 && forged.output.contains("InvalidSignatureException"), "\(forged.output)")
            let unsigned = try TestSupport.runWithEnvironment(
                "aws", ["lambda", "list-functions", "--no-sign-request", "--endpoint-url", api.endpoint],
                environment: try api.environment(), check: false)
            #expect(unsigned.status != 0 && unsigned.output.contains("MissingAuthenticationTokenException"), "\(unsigned.output)")

            try api.aws(["delete-function", "--function-name", "greeter"])
            let gone = try api.aws(["get-function", "--function-name", "greeter"], check: false)
            #expect(gone.status != 0 && gone.output.contains("ResourceNotFoundException"), "\(gone.output)")
            let missing = try api.aws(["invoke", "--function-name", "greeter", out], check: false)
            #expect(missing.status != 0 && missing.output.contains("ResourceNotFoundException"), "\(missing.output)")
            #expect(api.process.stop(grace: 30) == 0)
            #expect(await harness.leftoversAfterSettling() == [])
        }
    }

    @Test func boto3RunsACorpusFunctionAndSeesItsErrors() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let harness = try RunHarness(dir)
            let layout = try await harness.corpusFunction(tag: "py-echo", handler: """
                import json, sys, http.client
                event = json.load(sys.stdin)
                print("event keys:", sorted(event), file=sys.stderr)
                if event.get("fail"):
                    sys.exit("asked to fail")
                print(json.dumps({"echo": event, "client": http.client.__name__}))
                """)
            let api = try API(harness)
            defer { api.process.stop() }
            let script = """
                import base64, json, sys, boto3
                client = boto3.client("lambda", endpoint_url=sys.argv[1])
                created = client.create_function(FunctionName="py-echo", PackageType="Image", Role="arn:aws:iam::000000000000:role/thaw",
                                                 Code={"ImageUri": sys.argv[2]}, Timeout=60)
                assert created["PackageType"] == "Image", created
                answer = client.invoke(FunctionName="py-echo", Payload=json.dumps({"a": 1}).encode(), LogType="Tail")
                body = json.loads(answer["Payload"].read())
                assert answer["StatusCode"] == 200 and "FunctionError" not in answer, answer
                assert body == {"echo": {"a": 1}, "client": "http.client"}, body
                assert "event keys: ['a']" in base64.b64decode(answer["LogResult"]).decode(), answer["LogResult"]
                failed = client.invoke(FunctionName="py-echo", Payload=b'{"fail": true}', LogType="Tail")
                assert failed["FunctionError"] == "Unhandled", failed
                error = json.loads(failed["Payload"].read())
                assert "status 1" in error["errorMessage"], error
                assert "asked to fail" in base64.b64decode(failed["LogResult"]).decode()
                queued = client.invoke(FunctionName="py-echo", InvocationType="Event", Payload=b'{"b": 2}')
                assert queued["StatusCode"] == 202, queued
                try:
                    client.invoke(FunctionName="py-echo", Payload=b"not json")
                    raise SystemExit("a payload that is not JSON was accepted")
                except client.exceptions.InvalidRequestContentException:
                    pass
                names = [f["FunctionName"] for f in client.list_functions()["Functions"]]
                assert names == ["py-echo"], names
                client.delete_function(FunctionName="py-echo")
                try:
                    client.get_function(FunctionName="py-echo")
                    raise SystemExit("a deleted function was found")
                except client.exceptions.ResourceNotFoundException:
                    pass
                print("boto3 ok")
                """
            let result = try TestSupport.runWithEnvironment("python3", ["-c", script, api.endpoint, "oci:\(layout):py-echo"],
                                                            environment: try api.environment(), check: false)
            let log = (try? String(contentsOfFile: api.log, encoding: .utf8)) ?? ""
            #expect(result.status == 0 && result.output.contains("boto3 ok"), "\(result.output)\nservice log:\n\(log)")
            // SIGTERM: the Event invocation still running finishes before the agent stops.
            #expect(api.process.stop(grace: 60) == 0, "\(log)")
            #expect(await harness.leftoversAfterSettling() == [])
        }
    }

    @Test func warmInstancesAreReusedLimitedAndExpire() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let harness = try RunHarness(dir)
            // Counts its invocations in the instance's /tmp; sleeps when asked to; fails when asked to.
            let handler = """
                #!/bin/sh
                event=$(cat)
                count=$(( $(cat /tmp/count 2>/dev/null || echo 0) + 1 ))
                echo $count > /tmp/count
                echo "invocation $count of instance $(hostname)" >&2
                case "$event" in *sleep*) sleep 3 ;; esac
                case "$event" in *fail*) exit 4 ;; esac
                case "$event" in *background*) sleep 100 & ;; esac
                case "$event" in *hog*) hog=$(head -c 400000000 /dev/zero | tr '\\0' a); echo ${#hog} ;; esac
                printf '{"count": %s, "pid": %s}' "$count" "$$"
                """
            _ = try FunctionImage.writeBusybox(to: harness.layout, tag: "counter", handler: handler,
                                               execution: .init(cmd: ["/function/handler"]))
            let api = try API(harness, options: ["--max-instances-per-function", "1", "--keep-alive", "4", "--keep-alive-min", "1"])
            defer { api.process.stop() }
            let script = """
                import base64, json, sys, threading, time, urllib.request, boto3
                from botocore.config import Config
                client = boto3.client("lambda", endpoint_url=sys.argv[1], config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))
                client.create_function(FunctionName="counter", PackageType="Image", Role="r", Code={"ImageUri": sys.argv[2]}, Timeout=30)
                def invoke(event):
                    answer = client.invoke(FunctionName="counter", Payload=json.dumps(event).encode(), LogType="Tail")
                    start = answer["ResponseMetadata"]["HTTPHeaders"]["x-thaw-start"]
                    log = base64.b64decode(answer["LogResult"]).decode()
                    return start, json.loads(answer["Payload"].read()), log, answer.get("FunctionError")
                start, body, log, error = invoke({})
                assert (start, body["count"], error) == ("cold", 1, None), (start, body, error)
                time.sleep(0.5)
                start, second, log, error = invoke({})
                # The same sandbox (its /tmp kept), a new handler process started ahead.
                assert (start, second["count"], error) == ("warm", 2, None), (start, second, error)
                assert second["pid"] != body["pid"], (body, second)
                assert "invocation 2" in log and "invocation 1" not in log, log
                # A process the handler leaves behind holds its output open: it is ended with the
                # handler, so the answer comes at once and the instance stays warm.
                began = time.monotonic()
                start, body, log, error = invoke({"background": 1})
                assert (start, body["count"], error) == ("warm", 3, None), (start, body, error)
                assert time.monotonic() - began < 10, "the answer waited for the background process"
                time.sleep(0.5)
                start, body, log, error = invoke({})
                assert (start, body["count"]) == ("warm", 4), (start, body)
                # One instance at most: a second invocation while it runs gets 429 at once.
                results = {}
                slow = threading.Thread(target=lambda: results.update(slow=invoke({"sleep": 1})))
                slow.start()
                time.sleep(1)
                began = time.monotonic()
                try:
                    invoke({})
                    raise SystemExit("a second concurrent invocation was admitted past --max-instances-per-function 1")
                except client.exceptions.TooManyRequestsException as refused:
                    headers = refused.response["ResponseMetadata"]["HTTPHeaders"]
                    assert "retry-after" in headers, headers
                    assert time.monotonic() - began < 2, "the refusal waited"
                slow.join()
                assert results["slow"][0] == "warm" and results["slow"][1]["count"] == 5, results
                # A failed handler retires its instance: the next start is cold.
                time.sleep(0.5)
                start, body, log, error = invoke({"fail": 1})
                assert (start, error) == ("warm", "Unhandled"), (start, body, error)
                time.sleep(0.5)
                start, body, log, error = invoke({})
                assert (start, body["count"]) == ("cold", 1), (start, body)
                # Idle past the keep-alive (4 s until the function has a pattern): cold again.
                time.sleep(6)
                start, body, log, error = invoke({})
                assert (start, body["count"]) == ("cold", 1), (start, body)
                # MemorySize (128 MB by default) is enforced: 400 MB in a shell variable is killed.
                start, body, log, error = invoke({"hog": 1})
                assert (start, error, body.get("errorType")) == ("warm", "Unhandled", "Runtime.OutOfMemory"), (start, body, error)
                assert "ran out of memory" in body["errorMessage"] and "128 MiB" in body["errorMessage"], body
                metrics = urllib.request.urlopen(sys.argv[1] + "/metrics").read().decode()
                assert 'thaw_api_invocations_total{start="warm"} 6' in metrics, metrics
                assert 'thaw_api_invocations_total{start="cold"} 3' in metrics, metrics
                assert 'thaw_api_invocations_refused_total 1' in metrics, metrics
                assert 'thaw_api_instances_stopped_total{reason="expired"} 1' in metrics, metrics
                assert 'thaw_api_instances_stopped_total{reason="failed"} 2' in metrics, metrics
                client.delete_function(FunctionName="counter")
                print("warm ok")
                """
            let result = try TestSupport.runWithEnvironment("python3", ["-c", script, api.endpoint, "oci:\(harness.layout):counter"],
                                                            environment: try api.environment(), check: false)
            let log = (try? String(contentsOfFile: api.log, encoding: .utf8)) ?? ""
            #expect(result.status == 0 && result.output.contains("warm ok"), "\(result.output)\nservice log:\n\(log)")
            #expect(api.process.stop(grace: 60) == 0, "\(log)")
            #expect(await harness.leftoversAfterSettling() == [])
        }
    }

    /// `--sandbox microvm` (TCG here): a function's instances go from cold (a boot) to
    /// deduplicated (its snapshot in the store, restored on demand) to warm (a VM restored ahead
    /// of the event), and back down as their keep-alive and keep-dedup periods pass. The boot id
    /// the handler read before its event tells a boot from a restore: every restore of one
    /// snapshot has the boot id of the boot it was taken in.
    @Test func microVMInstancesMoveBetweenWarmDeduplicatedAndCold() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let harness = try RunHarness(dir)
            let handler = """
                #!/bin/sh
                # Read before the event: the kernel makes its boot id on the first read.
                boot=$(cat /proc/sys/kernel/random/boot_id)
                event=$(cat)
                count=$(( $(cat /tmp/count 2>/dev/null || echo 0) + 1 ))
                echo $count > /tmp/count
                echo "handled $event" >&2
                printf '{"event": %s, "boot": "%s", "count": %s}' "$event" "$boot" "$count"
                """
            _ = try FunctionImage.writeBusybox(to: harness.layout, tag: "vm", handler: handler,
                                               execution: .init(cmd: ["/function/handler"]))
            let api = try API(harness, options: ["--sandbox", "microvm", "--max-instances-per-function", "1",
                                                 "--keep-alive", "24", "--keep-alive-min", "1",
                                                 "--keep-dedup", "30", "--keep-dedup-min", "1"])
            defer { api.process.stop() }
            let script = """
                import base64, glob, json, re, sys, time, urllib.request, boto3
                from botocore.config import Config
                endpoint, image, store = sys.argv[1:4]
                client = boto3.client("lambda", endpoint_url=endpoint,
                                      config=Config(retries={"total_max_attempts": 1, "mode": "standard"}, read_timeout=300))
                client.create_function(FunctionName="vm", PackageType="Image", Role="r", Code={"ImageUri": image}, Timeout=8)
                def invoke(n):
                    answer = client.invoke(FunctionName="vm", Payload=json.dumps({"n": n}).encode(), LogType="Tail")
                    start = answer["ResponseMetadata"]["HTTPHeaders"]["x-thaw-start"]
                    body = json.loads(answer["Payload"].read())
                    assert answer.get("FunctionError") is None and body["event"] == {"n": n}, (start, body)
                    assert "handled" in base64.b64decode(answer["LogResult"]).decode()
                    return start, body
                def metrics():
                    return urllib.request.urlopen(endpoint + "/metrics").read().decode()
                def figure(name):
                    found = re.search("^" + re.escape(name) + r" (\\S+)$", metrics(), re.MULTILINE)
                    return float(found.group(1)) if found else 0.0
                def wait(name, value, seconds=300):
                    deadline = time.monotonic() + seconds
                    while figure(name) != value:
                        assert time.monotonic() < deadline, f"{name} did not become {value}:\\n{metrics()}"
                        time.sleep(0.2)
                def snapshots():
                    return glob.glob(store + "/roots/*/snapshots/*/*")
                start, cold = invoke(0)
                assert start == "cold", start
                # The service snapshots the function after its first answer.
                wait('thaw_api_instances{state="deduplicated"}', 1)
                assert len(snapshots()) == 1, snapshots()
                start, restored = invoke(1)
                assert start == "deduplicated" and restored["boot"] != cold["boot"], (start, restored, cold)
                # A VM is restored ahead of the next event: a restore of the same snapshot. It
                # waits longer than the function's timeout (8 s, and 10 s for the restore) allow.
                wait('thaw_api_instances{state="warm"}', 1)
                time.sleep(19)
                start, warm = invoke(2)
                assert start == "warm" and warm["boot"] == restored["boot"] and warm["count"] == 1, (start, warm)
                # Past the keep-alive (24 s) the warm VM stops; the function stays deduplicated.
                wait('thaw_api_instances{state="warm"}', 1)
                time.sleep(26)
                assert figure('thaw_api_instances{state="warm"}') == 0, metrics()
                start, again = invoke(3)
                assert start == "deduplicated" and again["boot"] == restored["boot"], (start, again)
                # Past the keep-dedup (30 s after the last warm VM went) the snapshot is deleted
                # from the store: cold again.
                wait('thaw_api_instances_stopped_total{reason="dedup_expired"}', 1, seconds=90)
                assert snapshots() == [], snapshots()
                start, booted = invoke(4)
                assert start == "cold" and booted["boot"] not in (cold["boot"], restored["boot"]), (start, booted)
                assert figure('thaw_api_invocations_total{start="warm"}') == 1, metrics()
                assert figure('thaw_api_invocations_total{start="deduplicated"}') == 2, metrics()
                assert figure('thaw_api_invocations_total{start="cold"}') == 2, metrics()
                assert figure('thaw_api_instances_stopped_total{reason="expired"}') >= 1, metrics()
                print("microvm ok")
                """
            let result = try TestSupport.runWithEnvironment("python3", ["-c", script, api.endpoint, "oci:\(harness.layout):vm", harness.store],
                                                            environment: try api.environment(), check: false)
            let log = (try? String(contentsOfFile: api.log, encoding: .utf8)) ?? ""
            #expect(result.status == 0 && result.output.contains("microvm ok"), "\(result.output)\nservice log:\n\(log)")
            // Stopped while it snapshots the function again: that boot ends with the service.
            #expect(api.process.stop(grace: 120) == 0, "\(log)")
            #expect(await harness.leftoversAfterSettling() == [])
        }
    }

    /// `thaw-bench load` against the service; its JSON summary.
    func load(_ api: API, _ arguments: [String]) throws -> [String: Any] {
        let result = try TestSupport.run(TestSupport.thawBenchExecutable, [
            "load", "--endpoint", api.endpoint, "--key-id", "AKIATHAWTEST00000001", "--secret", "thaw-test-secret",
        ] + arguments, check: false)
        let line = result.output.split(separator: "\n").last { $0.hasPrefix("{") }.map(String.init) ?? ""
        guard result.status == 0, let summary = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw Failed(description: "thaw-bench load \(arguments.joined(separator: " ")): \(result.output)")
        }
        return summary
    }

    @Test func boundedLoadPastCapacityLosesNothingAndKeepsItsGoodput() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let harness = try RunHarness(dir)
            let names = ["alpha", "beta", "gamma"]
            for name in names {
                _ = try FunctionImage.writeBusybox(to: harness.layout, tag: name,
                                                   handler: "#!/bin/sh\nevent=$(cat)\nsleep 0.1\nprintf '{\"echo\": %s}' \"$event\"\n",
                                                   execution: .init(cmd: ["/function/handler"]))
            }
            // Four invocations at once on the agent, two per function.
            let api = try API(harness, options: ["--max-concurrent-invocations", "4", "--max-instances-per-function", "2",
                                                 "--keep-alive", "600", "--keep-alive-min", "600"])
            defer { api.process.stop() }
            for name in names {
                try api.aws(["create-function", "--function-name", name, "--package-type", "Image", "--role", "r",
                             "--code", "ImageUri=oci:\(harness.layout):\(name)"])
            }
            let functions = names.flatMap { ["--function", "\($0):1"] }
            // Instances made, then the capacity: four clients back to back.
            _ = try load(api, ["--closed", "4", "--seconds", "3"] + functions)
            let capacity = try load(api, ["--closed", "4", "--seconds", "5"] + functions)
            let peak = try #require(capacity["goodput"] as? Double)
            #expect(peak > 5, "four instances of a 0.1 s handler answer \(peak)/s: \(capacity)")

            // Open loop at the capacity and at twice it, with mixed rates (50%, 30%, 20%).
            var goodputs: [Double] = []
            for factor in [1.0, 2.0] {
                let rates = zip(names, [0.5, 0.3, 0.2]).flatMap { ["--function", "\($0.0):\(peak * factor * $0.1)"] }
                let summary = try load(api, ["--seconds", "8", "--max-requests", "2000"] + rates)
                let sent = summary["sent"] as? Int ?? -1, answered = summary["answered"] as? Int ?? -1
                let refused = summary["refused"] as? Int ?? -1
                // Every request has exactly one fate, and every answer is its own request's.
                #expect(sent == answered + refused, "\(factor)×: \(summary)")
                #expect(summary["failed"] as? Int == 0 && summary["mismatched"] as? Int == 0, "\(factor)×: \(summary)")
                #expect(summary["refused_without_retry_after"] as? Int == 0, "\(factor)×: \(summary)")
                if factor == 2 {
                    #expect(refused > 0, "twice the capacity was all admitted: \(summary)")
                    // Refused at once, not after waiting: a refusal that queued for an instance
                    // would wait at least one handler (0.1 s) and take longer than an answer. Both
                    // medians slow alike when the machine is busy, so they are compared with each
                    // other rather than with a fixed time.
                    let refusalMedian = summary["refusal_p50_ms"] as? Double ?? 1e9
                    let answerMedian = summary["answer_p50_ms"] as? Double ?? 0
                    #expect(refusalMedian < answerMedian, "\(summary)")
                }
                goodputs.append(summary["goodput"] as? Double ?? 0)
            }
            // No collapse: past capacity, the service keeps at least 90% of the best goodput seen.
            #expect(goodputs[1] >= 0.9 * goodputs.max()!, "goodput at 1× and 2× the capacity (\(peak)/s): \(goodputs)")
            #expect(api.process.stop(grace: 60) == 0)
            #expect(await harness.leftoversAfterSettling() == [])
        }
    }

    @Test func agentsShareOneAPIStickyByFunctionAndOneKilledLeavesTheOthersServing() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let harness = try RunHarness(dir)
            let postgres = try await PostgresServer.start()
            let database = try await postgres.createDatabase("thaw_cluster")
            // Sleeps as long as the event asks, then echoes it.
            _ = try FunctionImage.writeBusybox(
                to: harness.layout, tag: "sleeper",
                handler: "#!/bin/sh\nevent=$(cat)\ncase \"$event\" in *slow*) sleep 3 ;; *) sleep 0.2 ;; esac\nprintf '{\"echo\": %s}' \"$event\"\n",
                execution: .init(cmd: ["/function/handler"]))
            let common = ["--metadata", database, "--agent-timeout", "15", "--max-instances-per-function", "8", "--keep-alive", "600",
                          "--keep-alive-min", "600"]
            let a = try API(harness, options: common + ["--agent-id", "agent-a"], name: "a")
            defer { a.process.stop() }
            let b = try API(harness, options: common + ["--agent-id", "agent-b"], name: "b")
            defer { b.process.stop() }
            // Names whose home is each agent, as every agent computes it.
            let candidates = (0..<40).map { "fn\($0)" }
            let onA = candidates.filter { Placement.order(of: $0, among: ["agent-a", "agent-b"]).first == "agent-a" }.prefix(2)
            let onB = candidates.filter { Placement.order(of: $0, among: ["agent-a", "agent-b"]).first == "agent-b" }.prefix(2)
            for name in onA + onB {
                try a.aws(["create-function", "--function-name", name, "--package-type", "Image", "--role", "r", "--timeout", "30",
                           "--code", "ImageUri=oci:\(harness.layout):sleeper"])
            }
            let metadata = try await MetadataLocation(parsing: database).open()
            defer { Task { await metadata.close() } }
            for _ in 0..<100 where try await metadata.agents().count < 2 { try await Task.sleep(for: .milliseconds(100)) }
            #expect(try await metadata.agents().map(\.id) == ["agent-a", "agent-b"])

            let script = """
                import json, os, signal, subprocess, sys, threading, time, boto3
                from botocore.config import Config
                a_url, b_url, b_pid, load = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
                on_a, on_b = json.loads(os.environ["ON_A"]), json.loads(os.environ["ON_B"])
                config = Config(retries={"total_max_attempts": 1, "mode": "standard"}, read_timeout=60)
                via_a = boto3.client("lambda", endpoint_url=a_url, config=config)
                via_b = boto3.client("lambda", endpoint_url=b_url, config=config)
                def invoke(client, name, event):
                    answer = client.invoke(FunctionName=name, Payload=json.dumps(event).encode())
                    headers = answer["ResponseMetadata"]["HTTPHeaders"]
                    body = json.loads(answer["Payload"].read())
                    assert body == {"echo": event}, body
                    return headers["x-thaw-agent"], headers["x-thaw-start"]
                # Sticky: each function runs on its home agent, whichever agent the request reaches,
                # and its instance stays warm there.
                for name, home in [(n, "agent-a") for n in on_a] + [(n, "agent-b") for n in on_b]:
                    assert invoke(via_a, name, {"n": 1}) == (home, "cold"), name
                    assert invoke(via_b, name, {"n": 2}) == (home, "warm"), name
                    assert invoke(via_a, name, {"n": 3}) == (home, "warm"), name
                print("sticky ok", flush=True)
                # Load through agent a, on all four functions, while agent b is killed.
                generator = subprocess.Popen(load, stdout=subprocess.PIPE, text=True)
                outcome = {}
                def slow():
                    try:
                        invoke(via_a, on_b[0], {"slow": 1})
                        outcome["slow"] = "answered"
                    except via_a.exceptions.ServiceException as error:
                        outcome["slow"] = error.response["Error"]["Message"]
                thread = threading.Thread(target=slow)
                thread.start()
                time.sleep(1.5)
                os.kill(b_pid, signal.SIGKILL)
                thread.join()
                assert "went away during the invocation" in outcome["slow"] and "agent-b" in outcome["slow"], outcome
                # New invocations of b's functions run on a at once.
                for name in on_b:
                    agent, start = invoke(via_a, name, {"n": 4})
                    assert agent == "agent-a", (name, agent)
                summary = json.loads(generator.communicate()[0].strip().splitlines()[-1])
                print("load", json.dumps(summary), flush=True)
                assert summary["sent"] == summary["answered"] + summary["refused"] + summary["failed"], summary
                assert summary["mismatched"] == 0 and summary["answered"] > 0, summary
                for failure in summary["first_failures"]:
                    assert "went away during the invocation" in failure, summary
                print("cluster ok")
                """
            let functions = (onA + onB).flatMap { ["--function", "\($0):4"] }
            let load = [TestSupport.thawBenchExecutable, "load", "--endpoint", a.endpoint, "--key-id", "AKIATHAWTEST00000001",
                        "--secret", "thaw-test-secret", "--seconds", "6", "--max-requests", "500"] + functions
            var environment = try a.environment()
            environment["ON_A"] = String(decoding: try JSONEncoder().encode(Array(onA)), as: UTF8.self)
            environment["ON_B"] = String(decoding: try JSONEncoder().encode(Array(onB)), as: UTF8.self)
            let result = try TestSupport.runWithEnvironment("python3", ["-c", script, a.endpoint, b.endpoint, "\(b.process.pid)"] + load,
                                                            environment: environment, check: false)
            let logs = ["a", "b"].map { (try? String(contentsOfFile: dir + "/\($0).log", encoding: .utf8)) ?? "" }.joined(separator: "\n---\n")
            #expect(result.status == 0 && result.output.contains("cluster ok"), "\(result.output)\nservice logs:\n\(logs)")
            #expect(b.process.stop(grace: 1) != 0, "agent b was killed")
            // The killed agent falls out of the metadata with its instance records (a generous
            // --agent-timeout: a loaded machine must not take a live agent for silent; failover
            // itself does not wait for it, since the dead agent refuses connections).
            for _ in 0..<450 where try await metadata.agents().count > 1 { try await Task.sleep(for: .milliseconds(100)) }
            #expect(try await metadata.agents().map(\.id) == ["agent-a"])
            #expect(try await metadata.instances(of: nil).allSatisfy { $0.agent == "agent-a" })
            #expect(try await !metadata.instances(of: nil).isEmpty)
            // Agent b, restarted on this host, reclaims what the killed one left (its FUSE mount,
            // its sandboxes' directories) and rejoins; the killed one's sandboxes ended when
            // their control sockets closed.
            let restarted = try API(harness, options: common + ["--agent-id", "agent-b"], name: "b2")
            defer { restarted.process.stop() }
            for _ in 0..<100 where try await metadata.agents().count < 2 { try await Task.sleep(for: .milliseconds(100)) }
            #expect(try await metadata.agents().map(\.id) == ["agent-a", "agent-b"])
            let log = (try? String(contentsOfFile: restarted.log, encoding: .utf8)) ?? ""
            #expect(log.contains("reclaimed what stopped agents left"), "\(log)")
            #expect(a.process.stop(grace: 60) == 0)
            #expect(restarted.process.stop(grace: 60) == 0)
            let left = await harness.leftoversAfterSettling(seconds: 15)
            #expect(left.isEmpty, "\(left)")
        }
    }
}
