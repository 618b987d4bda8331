import Crypto
import Foundation
import Testing
import ThawSandbox
import ThawTestSupport

/// A real microVM (TCG on hosts whose KVM cannot run stock guests) snapshotted once its
/// handler is ready, then restored: from the image pulled to a file, so only the VM is tested.
@Suite(.serialized) struct MicroVMSnapshotTests {
    static let handler = """
        #!/bin/sh
        # Some start-up work before the event, as a runtime loading would do.
        started=0
        while [ $started -lt 2000 ]; do started=$((started + 1)); done
        read -r event
        echo "handling $event" >&2
        printf '{"event":%s,"started":%s,"host":"%s"}\\n' "$event" "$started" "$(hostname)"
        """

    @Test func aRestoredVMAnswersAsAColdBootDoesAndLeavesTheRAMFileUnwritten() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let harness = try RunHarness(dir)
            let id = try await harness.pushBusybox(tag: "snap", handler: Self.handler, execution: .init(entrypoint: ["/function/handler"]))
            let image = dir + "/image.ext4"
            _ = try await TestSupport.thawOnOwnThread(["pull", id, "-o", image, "--store", harness.store, "--keys", dir + "/keys"])
            let function = try FunctionSpec(execution: .init(entrypoint: ["/function/handler"]), image: id)
            let assets = try await TestSupport.onOwnThread {
                try MicroVMAssets.prepare(kernel: nil, guest: TestSupport.guestExecutable, directory: dir + "/vm")
            }
            var options = MicroVMSandbox.Options(assets: assets, accelerator: MicroVMSandbox.chooseAccelerator().0)
            options.memoryMiB = 256
            options.timeout = .seconds(300)
            options.kernelArguments = ["nokaslr"]
            options.stateDirectory = dir + "/vms"
            let vm = MicroVMSandbox(options: options)
            let files = MicroVMSandbox.SnapshotFiles(ram: dir + "/ram", state: dir + "/state")

            let timings = try await vm.snapshot(root: .file(image), function: function, into: files)
            #expect(timings.ready >= timings.launched && timings.saved >= timings.ready)
            let state = try #require(FileManager.default.attributesOfItem(atPath: files.state)[.size] as? Int)
            #expect(state > 1000, "the device state is saved")
            let ramDigest = try await TestSupport.onOwnThread { try Self.digest(files.ram) }

            // Two restores from the one snapshot at once, each with its own event.
            async let first = vm.restore(root: .file(image), from: files, event: Array(#"{"n":1}"#.utf8) + [0x0a])
            async let second = vm.restore(root: .file(image), from: files, event: Array(#"{"n":2}"#.utf8) + [0x0a])
            let restores = try await [first, second]
            for (index, (outcome, restored)) in restores.enumerated() {
                #expect(outcome.failure == nil, "restore \(index + 1): \(String(describing: outcome.failure)) \(String(decoding: outcome.logTail, as: UTF8.self))")
                #expect(restored != nil)
                let answer = try JSONSerialization.jsonObject(with: Data(outcome.response)) as? [String: Any]
                #expect((answer?["event"] as? [String: Any])?["n"] as? Int == index + 1, "\(String(decoding: outcome.response, as: UTF8.self))")
                #expect(answer?["started"] as? Int == 2000 && answer?["host"] as? String == "thaw")
                #expect(String(decoding: outcome.logTail, as: UTF8.self).contains("handling {\"n\":\(index + 1)}"))
            }
            #expect(try await TestSupport.onOwnThread { try Self.digest(files.ram) } == ramDigest, "a restore maps the RAM file privately: it is never written")

            // A cold boot of the same function answers the same event with the same bytes.
            let event = Array(#"{"n":1}"#.utf8) + [0x0a]
            let cold = try await vm.run(root: .file(image), function: function, event: event)
            #expect(cold.failure == nil, "\(String(describing: cold.failure))")
            #expect(cold.response == restores[0].0.response)
        }
    }

    @Test func aHandlerThatEndsBeforeItIsReadyCannotBeSnapshotted() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let harness = try RunHarness(dir)
            let id = try await harness.pushBusybox(tag: "quick", handler: "#!/bin/sh\necho too soon >&2\nexit 3\n",
                                                   execution: .init(entrypoint: ["/function/handler"]))
            let image = dir + "/image.ext4"
            _ = try await TestSupport.thawOnOwnThread(["pull", id, "-o", image, "--store", harness.store, "--keys", dir + "/keys"])
            let assets = try await TestSupport.onOwnThread {
                try MicroVMAssets.prepare(kernel: nil, guest: TestSupport.guestExecutable, directory: dir + "/vm")
            }
            var options = MicroVMSandbox.Options(assets: assets, accelerator: MicroVMSandbox.chooseAccelerator().0)
            options.memoryMiB = 256
            options.timeout = .seconds(300)
            options.stateDirectory = dir + "/vms"
            let files = MicroVMSandbox.SnapshotFiles(ram: dir + "/ram", state: dir + "/state")
            await #expect {
                try await MicroVMSandbox(options: options).snapshot(root: .file(image), function: try FunctionSpec(
                    execution: .init(entrypoint: ["/function/handler"]), image: id), into: files)
            } throws: { error in
                let text = "\(error)"
                return text.contains("before it was ready") && text.contains("too soon")
            }
            #expect(!FileManager.default.fileExists(atPath: files.state))
        }
    }

    static func digest(_ path: String) throws -> String {
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        var hash = SHA256()
        while let data = try handle.read(upToCount: 8 << 20), !data.isEmpty { hash.update(data: data) }
        return hash.finalize().map { String(format: "%02x", $0) }.joined()
    }
}
