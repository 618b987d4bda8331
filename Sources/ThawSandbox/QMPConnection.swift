import Foundation
import Glibc
import ThawSandboxCore

/// A client of qemu's machine protocol (QMP) over its Unix socket: one JSON object per line,
/// commands answered in order, asynchronous events interleaved (and skipped here). Thaw speaks
/// it itself because no Swift package does; it needs only a handful of commands (stop, cont,
/// migrate, migrate-incoming, query-status, query-migrate, quit).
///
/// Blocking I/O with a receive timeout: use it from a thread of its own, never from Swift's
/// concurrency pool.
final class QMPConnection {
    private let descriptor: Int32
    private var buffer: [UInt8] = []

    /// Connects (qemu creates the socket shortly after it starts, so this retries until
    /// `timeout`) and leaves the greeting's capabilities negotiation done.
    init(path: String, timeout: Duration = .seconds(30)) throws {
        let deadline = ContinuousClock.now + timeout
        var connected: Int32 = -1
        while connected < 0 {
            let candidate = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            guard candidate >= 0 else { throw SandboxError(.setupFailed, "cannot create a socket for QMP: \(SystemCalls.errorText())") }
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(path.utf8)
            guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
                close(candidate)
                throw SandboxError(.setupFailed, "the QMP socket path \(path) is too long")
            }
            withUnsafeMutableBytes(of: &address.sun_path) { raw in
                raw.copyBytes(from: bytes)
                raw[bytes.count] = 0
            }
            let result = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(candidate, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            if result == 0 {
                connected = candidate
            } else {
                close(candidate)
                guard ContinuousClock.now < deadline else {
                    throw SandboxError(.setupFailed, "qemu's QMP socket \(path) did not accept a connection within \(timeout)")
                }
                usleep(10_000)
            }
        }
        descriptor = connected
        var limit = timeval(tv_sec: 60, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        _ = try readMessage()  // the greeting
        _ = try execute("qmp_capabilities")
    }

    deinit { close(descriptor) }

    /// Runs `command` and returns its `return` value.
    ///
    /// - Throws: `SandboxError(.setupFailed)` with qemu's error description, or when the
    ///   connection ends or times out.
    @discardableResult
    func execute(_ command: String, _ arguments: [String: Any]? = nil) throws -> Any {
        var message: [String: Any] = ["execute": command]
        if let arguments { message["arguments"] = arguments }
        let data = try JSONSerialization.data(withJSONObject: message) + Data([0x0a])
        try data.withUnsafeBytes { raw in
            var sent = 0
            while sent < raw.count {
                let count = send(descriptor, raw.baseAddress! + sent, raw.count - sent, Int32(MSG_NOSIGNAL))
                guard count > 0 else { throw SandboxError(.setupFailed, "cannot send \(command) to qemu: \(SystemCalls.errorText())") }
                sent += count
            }
        }
        while true {
            let reply = try readMessage()
            if let value = reply["return"] { return value }
            if let error = reply["error"] as? [String: Any] {
                throw SandboxError(.setupFailed, "qemu refused \(command): \(error["desc"] as? String ?? "\(error)")")
            }
            // An event ("event": …): not the answer.
        }
    }

    /// The value of `field` in the answer to `query-…` `command`, for polling.
    func query(_ command: String, field: String) throws -> String {
        let answer = try execute(command) as? [String: Any]
        return answer?[field] as? String ?? ""
    }

    private func readMessage() throws -> [String: Any] {
        while true {
            if let newline = buffer.firstIndex(of: 0x0a) {
                let line = Array(buffer[..<newline])
                buffer.removeSubrange(...newline)
                guard !line.isEmpty else { continue }
                guard let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else {
                    throw SandboxError(.setupFailed, "qemu sent QMP that is not a JSON object: \(String(decoding: line.prefix(200), as: UTF8.self))")
                }
                return object
            }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let count = chunk.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            guard count > 0 else {
                throw SandboxError(.setupFailed, count == 0 ? "qemu closed its QMP connection" : "reading QMP from qemu failed: \(SystemCalls.errorText())")
            }
            buffer += chunk.prefix(count)
        }
    }
}
