import Foundation
import Glibc
import Testing
import ThawLambdaAPI
import ThawMetadata

/// How `AgentCluster.forward` names a failure: whether the request could have reached the other
/// agent decides whether it may be sent elsewhere.
struct ForwardingTests {
    /// A listening socket on a free loopback port; `accepting` takes one connection, reads what
    /// comes, and closes without an answer.
    final class Listener: @unchecked Sendable {
        let descriptor: Int32
        let port: Int

        init() throws {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = 0
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
            guard bound == 0, listen(fd, 8) == 0 else {
                close(fd)
                throw POSIXError(.EADDRINUSE)
            }
            _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
            descriptor = fd
            port = Int(UInt16(bigEndian: address.sin_port))
        }

        func acceptReadAndClose() {
            Thread { [descriptor] in
                let connection = accept(descriptor, nil, nil)
                guard connection >= 0 else { return }
                var buffer = [UInt8](repeating: 0, count: 65536)
                _ = read(connection, &buffer, buffer.count)
                close(connection)
            }.start()
        }

        deinit { close(descriptor) }
    }

    func cluster(_ directory: String) async throws -> AgentCluster {
        let metadata = try await MetadataLocation.sqlite(path: directory + "/metadata.sqlite").open()
        return AgentCluster(id: "here", address: "127.0.0.1:1", metadata: metadata)
    }

    func forward(_ cluster: AgentCluster, port: Int) async -> AgentCluster.ForwardFailure? {
        let agent = AgentRecord(id: "there", address: "127.0.0.1:\(port)", startedAt: Date(), heartbeatAt: Date())
        do {
            _ = try await cluster.forward(method: "POST", path: "/2015-03-31/functions/f/invocations", query: nil,
                                          headers: [("Host", "api.example:9001")], body: Array("{}".utf8), to: agent, timeout: .seconds(20))
            return nil
        } catch let failure as AgentCluster.ForwardFailure {
            return failure
        } catch {
            Issue.record("forward threw \(error), not a ForwardFailure")
            return nil
        }
    }

    @Test func aRefusedConnectionIsNotDeliveredAndAClosedOneIsLost() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("thaw-forward-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let cluster = try await cluster(directory)
        // Nothing listens: the request never left, so it may go to another agent.
        let closedPort = try Listener().port  // bound, then closed at once
        guard case .notDelivered = await forward(cluster, port: closedPort) else {
            Issue.record("a refused connection was not reported as not delivered")
            return
        }
        // Something took the request and went away: it may have run, so it must not be resent.
        let listener = try Listener()
        listener.acceptReadAndClose()
        guard case .lost = await forward(cluster, port: listener.port) else {
            Issue.record("a request taken and dropped was not reported as lost")
            return
        }
        await cluster.close()
    }
}
