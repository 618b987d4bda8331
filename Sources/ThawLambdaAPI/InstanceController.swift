public import Prometheus
public import ServiceLifecycle

/// Moves idle instances out of the pool as their keep-alive ends, and stops them; at graceful
/// shutdown it stops every idle one. Placed in a service group after the agent and before the
/// HTTP server, it stops after the server, so no invocation hands it an instance afterwards.
public struct InstanceController<Instance: Sendable>: Service {
    public let pool: InstancePool<Instance>
    public let interval: Duration
    public let metrics: InvocationMetrics
    /// Stops instances the pool gave up; the controller confirms them to the pool afterwards.
    public let stop: @Sendable ([Instance]) async -> Void
    /// Called at every tick after the pool's expiry, and once at shutdown with `true`: what
    /// else moves between states (deduplicated instances expiring).
    public let tick: @Sendable (_ shuttingDown: Bool) async -> Void

    public init(pool: InstancePool<Instance>, interval: Duration = .milliseconds(500), metrics: InvocationMetrics,
                stop: @escaping @Sendable ([Instance]) async -> Void,
                tick: @escaping @Sendable (_ shuttingDown: Bool) async -> Void = { _ in }) {
        self.pool = pool
        self.interval = interval
        self.metrics = metrics
        self.stop = stop
        self.tick = tick
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                guard (try? await Task.sleep(for: interval)) != nil else { break }
                let expired = await pool.expire()
                if !expired.isEmpty {
                    metrics.stopped(expired.count, reason: .expired)
                    await stop(expired)
                    await pool.confirmStopped(expired.count)
                }
                await tick(false)
                await metrics.update(census: pool.census)
            }
        }
        await tick(true)
        let idle = await pool.close()
        metrics.stopped(idle.count, reason: .shutdown)
        await stop(idle)
        await pool.confirmStopped(idle.count)
        // Invocations still finishing (their next handler starting) hand their instance to be
        // stopped by whoever released it; wait for them, so none outlives this process.
        for _ in 0..<1200 {
            let census = await pool.census
            if census.busy == 0 && census.unstopped == 0 { break }
            try? await Task.sleep(for: .milliseconds(50))
        }
        await metrics.update(census: pool.census)
    }
}

/// The invoke service's figures in the agent's Prometheus registry: invocations by how they
/// started, refusals, instances by state and why they were stopped.
public final class InvocationMetrics: Sendable {
    public enum StopReason: String, Sendable, CaseIterable {
        /// Idle past its function's keep-alive (a microVM's function stays deduplicated).
        case expired
        /// A deduplicated instance past its function's keep-dedup: its snapshot was deleted.
        case dedupExpired = "dedup_expired"
        /// Over the idle memory budget.
        case budget
        /// Its function's code changed, or the function was deleted.
        case stale
        /// Its handler failed, timed out or answered too much.
        case failed
        case shutdown
    }

    private let invocations: [StartKind: Counter]
    private let refused: Counter
    private let stoppedByReason: [StopReason: Counter]
    private let busy: Gauge
    private let warm: Gauge
    private let warmBytes: Gauge
    private let deduplicated: Gauge
    private let deduplicatedStoredBytes: Gauge

    public init(registry: PrometheusCollectorRegistry) {
        invocations = Dictionary(uniqueKeysWithValues: [StartKind.warm, .deduplicated, .cold].map {
            ($0, registry.makeCounter(name: "thaw_api_invocations_total", labels: [("start", $0.rawValue)]))
        })
        refused = registry.makeCounter(name: "thaw_api_invocations_refused_total")
        stoppedByReason = Dictionary(uniqueKeysWithValues: StopReason.allCases.map {
            ($0, registry.makeCounter(name: "thaw_api_instances_stopped_total", labels: [("reason", $0.rawValue)]))
        })
        busy = registry.makeGauge(name: "thaw_api_instances", labels: [("state", "busy")])
        warm = registry.makeGauge(name: "thaw_api_instances", labels: [("state", "warm")])
        warmBytes = registry.makeGauge(name: "thaw_api_idle_instance_bytes", labels: [("state", "warm")])
        deduplicated = registry.makeGauge(name: "thaw_api_instances", labels: [("state", "deduplicated")])
        deduplicatedStoredBytes = registry.makeGauge(name: "thaw_api_deduplicated_stored_bytes")
    }

    public func invoked(_ start: StartKind) { invocations[start]?.increment() }
    public func refusedOne() { refused.increment() }
    public func stopped(_ count: Int, reason: StopReason) {
        if count > 0 { stoppedByReason[reason]?.increment(by: Int64(count)) }
    }

    public func update<Instance>(census: InstancePool<Instance>.Census) {
        busy.set(Double(census.busy))
        warm.set(Double(census.idle))
        warmBytes.set(Double(census.idleMemory))
    }

    public func update<Snapshot>(deduplicated census: DeduplicatedInstances<Snapshot>.Census) {
        deduplicated.set(Double(census.snapshots))
        deduplicatedStoredBytes.set(Double(census.storedBytes))
    }
}
