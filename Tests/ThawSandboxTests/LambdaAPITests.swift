import Foundation
import Testing
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
        var log: String { harness.dir + "/api.log" }

        init(_ harness: RunHarness) throws {
            self.harness = harness
            port = try TestSupport.freePort()
            let keyID = "AKIATHAWTEST00000001"
            try "[default]\naws_access_key_id = \(keyID)\naws_secret_access_key = thaw-test-secret\n"
                .write(toFile: harness.dir + "/api-credentials", atomically: true, encoding: .utf8)
            process = try BackgroundProcess("env", [
                "THAW_RUNTIME_DIR=\(harness.runtime)", TestSupport.thawExecutable, "serve-api",
                "--listen", "127.0.0.1:\(port)", "--credentials", harness.dir + "/api-credentials",
                "--store", harness.store, "--keys", harness.dir + "/keys", "--cache-dir", harness.dir + "/cache",
            ], logPath: harness.dir + "/api.log")
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

            let got = try api.json(try api.aws(["get-function", "--function-name", "greeter"]))
            let configuration = try #require(got["Configuration"] as? [String: Any])
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
}
