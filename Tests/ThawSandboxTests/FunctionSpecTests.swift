import Glibc
import Testing
import ThawImage
@testable import ThawSandbox
@testable import ThawSandboxCore

@Suite struct FunctionSpecTests {
    @Test func entrypointThenCmdWithTheImageEnvironment() throws {
        let execution = ImageConfiguration.Execution(user: "app", env: ["PATH=/opt/bin", "MODE=a"], entrypoint: ["/entry", "-x"],
                                                     cmd: ["serve"], workingDir: "/srv")
        let spec = try FunctionSpec(execution: execution, image: "fn", environment: ["MODE=b"])
        #expect(spec.arguments == ["/entry", "-x", "serve"])
        #expect(spec.environment == ["PATH=/opt/bin", "MODE=a", "MODE=b"])
        #expect(spec.environmentValue("MODE") == "b")
        #expect(spec.workingDirectory == "/srv")
        #expect(spec.user == "app")
    }

    @Test func overridesFollowContainerRuntimes() throws {
        let execution = ImageConfiguration.Execution(entrypoint: ["/entry"], cmd: ["default"])
        #expect(try FunctionSpec(execution: execution, image: "fn", command: ["other"]).arguments == ["/entry", "other"])
        #expect(try FunctionSpec(execution: execution, image: "fn", entrypoint: ["/bin/sh"]).arguments == ["/bin/sh"])
        #expect(try FunctionSpec(execution: execution, image: "fn", command: ["-c", "x"], entrypoint: ["/bin/sh"]).arguments
                == ["/bin/sh", "-c", "x"])
    }

    @Test func aDefaultPathAndRootDirectory() throws {
        let spec = try FunctionSpec(execution: .init(cmd: ["run"]), image: "fn")
        #expect(spec.environmentValue("PATH") == FunctionSpec.defaultPath)
        #expect(spec.workingDirectory == "/")
        #expect(spec.user == "")
    }

    @Test func noHandlerIsAClearError() {
        #expect {
            try FunctionSpec(execution: .init(env: ["A=1"]), image: "oci:x:fn")
        } throws: { error in
            let error = error as? SandboxError
            return error?.kind == .invalidFunction && error?.message.contains("oci:x:fn") == true
                && error?.message.contains("neither Entrypoint nor Cmd") == true
        }
        #expect(throws: SandboxError.self) { try FunctionSpec(execution: .init(cmd: ["x"]), image: "fn", environment: ["NOEQUALS"]) }
        #expect(throws: SandboxError.self) { try FunctionSpec(execution: .init(cmd: ["x"], workingDir: "rel"), image: "fn") }
    }
}

@Suite struct UserDatabaseTests {
    let users = UserDatabase(
        passwd: "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nbroken line\nweb:x:33:33:www:/var/www:/bin/false\n",
        group: "root:x:0:\napp:x:1000:\nwww-data:x:33:app\nstaff:x:50:app,web\n")

    @Test func namesNumbersAndGroups() throws {
        #expect(try users.resolve("") == .init(uid: 0, gid: 0, supplementaryGroups: [0], home: "/root"))
        #expect(try users.resolve("app") == .init(uid: 1000, gid: 1000, supplementaryGroups: [1000, 33, 50], home: "/home/app"))
        #expect(try users.resolve("33") == .init(uid: 33, gid: 33, supplementaryGroups: [33, 50], home: "/var/www"))
        #expect(try users.resolve("app:staff") == .init(uid: 1000, gid: 50, supplementaryGroups: [50], home: "/home/app"))
        #expect(try users.resolve("4242:4242") == .init(uid: 4242, gid: 4242, supplementaryGroups: [4242], home: "/"))
    }

    @Test func unknownNamesAreClearErrors() {
        #expect { try users.resolve("nobody") } throws: { ($0 as? SandboxError)?.message.contains("'nobody'") == true }
        #expect { try users.resolve("app:wheel") } throws: { ($0 as? SandboxError)?.message.contains("'wheel'") == true }
    }

    /// The plan crosses a pipe as one line: the line's end ends it, an empty pipe means the
    /// host abandoned the sandbox, and a plan cut short is an error that says so.
    @Test func thePlanCrossesItsPipeAsOneLine() throws {
        let spec = try FunctionSpec(execution: .init(cmd: ["/bin/handler"]), image: "fn")
        let plan = SandboxPlan(imageFile: "/run/image.ext4", workDirectory: "/run/sandbox-1", tmpSize: 1 << 20, network: .none,
                               deviceReadAheadKiB: 16, function: spec, memoryCgroup: "/sys/fs/cgroup/memory/thaw-1")
        func received(_ bytes: [UInt8], closing: Bool) throws -> SandboxPlan? {
            var ends: [Int32] = [0, 0]
            #expect(pipe(&ends) == 0)
            _ = bytes.withUnsafeBytes { write(ends[1], $0.baseAddress, $0.count) }
            // Left open, the write end shows that the reader stops at the end of the line.
            if closing { close(ends[1]) }
            defer { if !closing { close(ends[1]) } }
            return try SandboxPlan.receive(from: ends[0])
        }
        let line = try plan.encodedLine()
        #expect(line.last == 0x0a && line.dropLast().allSatisfy { $0 != 0x0a })
        #expect(try received(line, closing: false) == plan)
        #expect(try received([], closing: true) == nil)
        #expect(throws: SandboxError.self) { try received(Array(line.dropLast(5)), closing: true) }
        #expect(throws: SandboxError.self) { try received(Array("{\"imageFile\": 1}\n".utf8), closing: true) }
    }
}
