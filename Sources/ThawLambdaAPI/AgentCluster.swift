public import AsyncHTTPClient
public import Foundation
public import Logging
import NIOCore
import NIOPosix
public import ServiceLifecycle
import Synchronization
public import ThawMetadata

/// Several agents behind one Lambda API: each `thaw serve-api` registers itself in the shared
/// metadata (PostgreSQL) and renews a heartbeat; an invocation that reaches an agent which is not
/// its function's home (`Placement`) is forwarded there as it came, signature and all, and the
/// home's answer goes back. Other operations act on the shared metadata and are answered where
/// they arrive.
///
/// An agent whose heartbeat has not changed for `timeout` is out of the placement, and is
/// removed with its instance records by the next agent that notices. An agent that refuses a
/// connection is left out at once, for `timeout`, by the agent that saw it: new invocations go
/// to the next agent in the function's order. An invocation already sent to an agent that goes
/// away fails with a 502 that says so, since it may or may not have run; clients that retry a
/// 502 (the AWS SDKs and CLI do) may run it twice, as with Lambda itself, whose invocations are
/// at least once.
///
/// Every agent must accept the same keys (one credentials file), since the home agent checks
/// the forwarded request's signature again.
public final class AgentCluster: Service, Sendable {
    public let id: String
    /// `HOST:PORT` where this agent's API takes forwarded invocations.
    public let address: String
    let metadata: any MetadataStore
    let interval: Duration
    let timeout: Duration
    let clock: @Sendable () -> Date
    let logger: Logger
    let client: HTTPClient
    /// Called when this agent finds itself missing from the metadata after it had registered
    /// (another agent took it for silent and removed it with its instance records), to record
    /// its instances again.
    let onRejoin: @Sendable () async -> Void
    private let state = Mutex(State())

    struct State {
        /// Live agents, this one included once it has beaten.
        var members: [AgentRecord] = []
        /// Each agent's last heartbeat value, and when (on this agent's clock) it changed.
        var seen: [String: (beat: Date, changedAt: Date)] = [:]
        /// Agents that refused a connection, until when they are left out.
        var suspects: [String: Date] = [:]
    }

    /// How an invocation was forwarded, when it could not be.
    public enum ForwardFailure: Error {
        /// Nothing reached the agent (it refused or did not accept the connection): safe to
        /// send elsewhere.
        case notDelivered(String)
        /// The request was sent and the agent went away before answering.
        case lost(String)
    }

    public init(id: String, address: String, metadata: any MetadataStore, interval: Duration = .seconds(1),
                timeout: Duration = .seconds(5), clock: @escaping @Sendable () -> Date = { Date() },
                logger: Logger = Logger(label: "thaw.cluster"), onRejoin: @escaping @Sendable () async -> Void = {}) {
        self.onRejoin = onRejoin
        self.id = id
        self.address = address
        self.metadata = metadata
        self.interval = interval
        self.timeout = timeout
        self.clock = clock
        self.logger = logger
        var configuration = HTTPClient.Configuration()
        // A refused connection must fail at once, so the invocation can go elsewhere.
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 256
        configuration.timeout = .init(connect: .seconds(2))
        client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    public func run() async throws {
        let started = clock()
        await cancelWhenGracefulShutdown {
            var first = true
            while !Task.isCancelled {
                if await !self.beat(started: started), !first {
                    self.logger.warning("agent \(self.id) was taken for silent and removed; it registers and records its instances again")
                    await self.onRejoin()
                }
                first = false
                guard (try? await Task.sleep(for: self.interval)) != nil else { break }
            }
        }
        // Leaving: this agent's functions move to their next agents at once.
        do {
            try await metadata.removeAgent(id: id)
        } catch {
            logger.error("cannot remove agent \(id) from the metadata: \(error)")
        }
        await close()
    }

    /// Closes the connections to other agents (`run` does at its end).
    public func close() async {
        try? await client.shutdown()
    }

    /// Renews this agent's heartbeat and reads who else is alive, removing agents long silent.
    ///
    /// An agent is alive while its heartbeat value keeps changing, timed on this agent's clock:
    /// agents on other hosts write their own clocks, which need not agree with this one.
    /// - Returns: whether this agent was registered already (true too when the metadata could
    ///   not be reached: nothing is known to be lost then).
    @discardableResult
    func beat(started: Date) async -> Bool {
        let now = clock()
        var registered = true
        do {
            registered = try await metadata.heartbeat(AgentRecord(id: id, address: address, startedAt: started, heartbeatAt: now))
            let all = try await metadata.agents()
            let limit = timeout.seconds
            let silent = state.withLock { state -> Set<String> in
                var silent: Set<String> = []
                for agent in all where agent.id != id {
                    if let seen = state.seen[agent.id], seen.beat == agent.heartbeatAt {
                        if now.timeIntervalSince(seen.changedAt) >= limit { silent.insert(agent.id) }
                    } else {
                        state.seen[agent.id] = (agent.heartbeatAt, now)
                    }
                }
                state.seen = state.seen.filter { entry in all.contains { $0.id == entry.key } }
                return silent
            }
            for agent in all where silent.contains(agent.id) {
                if try await metadata.removeAgent(id: agent.id) {
                    logger.warning("agent \(agent.id) at \(agent.address) went silent; its functions move")
                }
            }
            let live = all.filter { !silent.contains($0.id) }
            state.withLock { $0.members = live }
        } catch {
            logger.error("cannot renew agent \(id)'s heartbeat in the metadata: \(error)")
        }
        return registered
    }

    /// The agent that should run `function` now, leaving out `excluded` and agents that refused
    /// a connection lately; nil when it is this one.
    public func home(of function: String, excluding excluded: Set<String> = []) -> AgentRecord? {
        let now = clock()
        let members = state.withLock { state -> [AgentRecord] in
            state.suspects = state.suspects.filter { $0.value > now }
            return state.members.filter { $0.id == id || (state.suspects[$0.id] == nil && !excluded.contains($0.id)) }
        }
        let byID = Dictionary(members.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        let ids = Set(members.map(\.id)).union([id])
        guard let first = Placement.order(of: function, among: Array(ids)).first, first != id else { return nil }
        return byID[first]
    }

    /// Leaves `agent` out of placement on this agent for `timeout`.
    public func suspect(_ agent: String) {
        let until = clock().addingTimeInterval(timeout.seconds)
        state.withLock { $0.suspects[agent] = until }
    }

    /// Sends a request as it came to `agent`, and returns its answer.
    ///
    /// - Throws: `ForwardFailure`.
    public func forward(method: String, path: String, query: String?, headers: [(String, String)], body: [UInt8],
                        to agent: AgentRecord, timeout: Duration) async throws -> (status: Int, headers: [(String, String)], body: [UInt8]) {
        var request = HTTPClientRequest(url: "http://\(agent.address)\(path)" + (query.map { $0.isEmpty ? "" : "?" + $0 } ?? ""))
        request.method = .init(rawValue: method)
        for (name, value) in headers where !Self.hopByHop.contains(name.lowercased()) {
            request.headers.add(name: name, value: value)
        }
        request.headers.replaceOrAdd(name: Self.forwardedHeader, value: id)
        request.body = .bytes(ByteBuffer(bytes: body))
        let response: HTTPClientResponse
        do {
            response = try await client.execute(request, timeout: .nanoseconds(Int64(timeout.seconds * 1e9)))
        } catch {
            throw Self.neverConnected(error) ? ForwardFailure.notDelivered("\(error)") : ForwardFailure.lost("\(error)")
        }
        do {
            let answer = try await response.body.collect(upTo: 16 << 20)
            let headers = response.headers.map { ($0.name, $0.value) }.filter { !Self.hopByHop.contains($0.0.lowercased()) }
            return (Int(response.status.code), headers, Array(answer.readableBytesView))
        } catch {
            throw ForwardFailure.lost("\(error)")
        }
    }

    /// The header a forwarded request carries (the forwarding agent's id): its receiver runs it
    /// itself, so membership that two agents see differently for a moment cannot bounce it.
    public static let forwardedHeader = "X-Thaw-Forwarded-By"
    static let hopByHop: Set<String> = ["connection", "keep-alive", "transfer-encoding", "content-length", "upgrade", "te", "trailer"]

    /// Whether `error` means the connection was never made, so nothing was sent.
    static func neverConnected(_ error: any Error) -> Bool {
        if error is NIOConnectionError { return true }
        if let error = error as? HTTPClientError, error == .connectTimeout { return true }
        if let error = error as? ChannelError, case .connectTimeout = error { return true }
        if let error = error as? IOError, [ECONNREFUSED, EHOSTUNREACH, ENETUNREACH].contains(error.errnoCode) { return true }
        return false
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
