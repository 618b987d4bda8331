import Foundation
import Testing
import ThawSandbox
import ThawTestSupport

/// One real microVM boot under qemu -M microvm (TCG on hosts whose KVM cannot run stock
/// guests): the root disk is the agent's NBD export, read by qemu's own NBD client.
@Suite(.serialized) struct MicroVMTests {
    @Test func aHandlerAnswersFromAMicroVM() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let harness = try RunHarness(dir)
            let handler = """
                #!/bin/sh
                read -r event
                echo "from the guest" >&2
                printf '{"event":%s,"uid":"%s","pwd":"%s","host":"%s"}\\n' "$event" "$(id -u)" "$(pwd)" "$(hostname)"
                """
            let id = try await harness.pushBusybox(tag: "vm", handler: handler, execution: .init(
                user: "app", entrypoint: ["/function/handler"], workingDir: "/home/app"))
            let result = try await harness.run([id, "--sandbox", "microvm", "--timeout", "300", "--event", #"{"vm": true}"#]
                                               + harness.commonArguments)
            #expect(result.status == 0, "\(result.log)")
            let answer = try JSONSerialization.jsonObject(with: Data(result.response.utf8)) as? [String: Any]
            #expect((answer?["event"] as? [String: Any])?["vm"] as? Bool == true, "\(result.response)")
            #expect(answer?["uid"] as? String == "1000")
            #expect(answer?["pwd"] as? String == "/home/app")
            #expect(answer?["host"] as? String == "thaw")
            #expect(result.log.contains("from the guest"))
            for step in ["root mounted", "handler started", "response received"] {
                #expect(result.log.contains(step), "breakdown lacks \(step): \(result.log)")
            }
            // The guest read the image lazily through the agent's NBD export.
            #expect(result.log.contains("origin:"))
            #expect(await harness.leftoversAfterSettling() == [])
        }
    }
}
