public import Foundation
import Synchronization

/// A real S3-compatible server for tests: `moto_server` (PyPI `moto[server]`, installed by
/// scripts/setup.sh) on a free loopback port, stopped when the value goes away.
public final class S3TestServer: @unchecked Sendable {
    public let port: Int
    private let process: BackgroundProcess
    public var endpoint: String { "http://127.0.0.1:\(port)" }

    /// Credentials moto accepts (any will do); the AWS CLI gets them from `awsEnvironment`.
    public static let accessKey = "thaw-test-access"
    public static let secretKey = "thaw-test-secret"

    public init() throws {
        port = try TestSupport.freePort()
        process = try BackgroundProcess("moto_server", ["-H", "127.0.0.1", "-p", String(port)])
        try TestSupport.waitForPort(port, what: "moto_server")
    }

    /// Stops the server; requests to it fail from then on.
    public func stop() { process.stop() }

    /// Environment for the AWS CLI and for `thaw` pointed at this server.
    public var awsEnvironment: [String: String] {
        ["AWS_ACCESS_KEY_ID": Self.accessKey, "AWS_SECRET_ACCESS_KEY": Self.secretKey, "AWS_DEFAULT_REGION": "us-east-1",
         "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"]
    }

    /// Runs the AWS CLI against this server.
    @discardableResult
    public func aws(_ arguments: [String], check: Bool = true) throws -> TestSupport.CommandResult {
        try TestSupport.runWithEnvironment("aws", ["--endpoint-url", endpoint] + arguments, environment: awsEnvironment, check: check)
    }
}

/// `Tests/Fixtures/s3-fault-proxy.py` in front of a server: forwards requests, or answers them
/// with injected errors while a fault is armed.
public final class S3FaultProxy: @unchecked Sendable {
    public let port: Int
    private let process: BackgroundProcess
    public var endpoint: String { "http://127.0.0.1:\(port)" }

    public init(upstream: String) throws {
        port = try TestSupport.freePort()
        process = try BackgroundProcess("python3", [Fixtures.directory + "/s3-fault-proxy.py", "--upstream", upstream,
                                                    "--port", String(port)])
        try TestSupport.waitForPort(port, what: "s3-fault-proxy.py")
    }

    public func stop() { process.stop() }

    /// Answers the next `count` requests with `status`.
    public func fail(status: Int, count: Int) throws {
        try TestSupport.run("curl", ["-sf", "-X", "POST", "\(endpoint)/__fault?status=\(status)&count=\(count)"])
    }

    /// Answers every request with `status` for `seconds`.
    public func fail(status: Int, seconds: Double) throws {
        try TestSupport.run("curl", ["-sf", "-X", "POST", "\(endpoint)/__fault?status=\(status)&seconds=\(seconds)"])
    }

    /// How many injected errors were served so far.
    public func faultsServed() throws -> Int {
        let output = try TestSupport.run("curl", ["-sf", "\(endpoint)/__stats"]).output
        let object = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any]
        return object?["faults"] as? Int ?? -1
    }
}

extension TestSupport {
    /// A loopback TCP port nothing listens on right now, for a test server to listen on.
    ///
    /// Chosen below the kernel's ephemeral range (`ip_local_port_range`): a port from that range
    /// (what binding port 0 gives) can meanwhile become the local end of some other test's
    /// outgoing connection, and the server then cannot listen on it. The ports handed out are
    /// remembered, so concurrent tests in this process never get the same one.
    public static func freePort() throws -> Int {
        let range = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8))?
            .split(whereSeparator: \.isWhitespace).compactMap { Int($0) } ?? []
        let ephemeral = (range.first ?? 32768)...(range.last ?? 60999)
        let candidates = ephemeral.lowerBound > 12000 ? 10000..<ephemeral.lowerBound : (ephemeral.upperBound + 1)..<65536
        guard candidates.count >= 1000 else {
            throw CommandFailed(description: "the ephemeral port range \(ephemeral) leaves too few ports for test servers")
        }
        for _ in 0..<1000 {
            let port = Int.random(in: candidates)
            let fresh = handedOutPorts.withLock { $0.insert(port).inserted }
            if fresh, canBind(port) { return port }
        }
        throw CommandFailed(description: "no free loopback port in \(candidates)")
    }

    private static let handedOutPorts = Mutex<Set<Int>>([])

    /// Whether a socket can bind loopback `port` now (nothing holds it).
    private static func canBind(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }

    /// Waits until something accepts connections on the loopback `port`.
    public static func waitForPort(_ port: Int, what: String, timeout: TimeInterval = 30) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = UInt16(port).bigEndian
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
            }
            close(fd)
            if connected { return }
            usleep(50_000)
        }
        throw CommandFailed(description: "\(what) did not start listening on port \(port) within \(Int(timeout)) s")
    }
}
