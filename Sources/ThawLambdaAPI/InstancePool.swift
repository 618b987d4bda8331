/// The instances of every function on one agent, and who may start one: the admission limit
/// across functions, the concurrency limit per function, and which idle instances stay warm.
///
/// An invocation takes a lease: a warm instance of the function's current code when one is
/// idle (the most recently used, so the others age out), otherwise the right to start one. A
/// lease past either limit is refused at once with 429, never queued. The controller asks
/// `expire` which idle instances have outlived their function's keep-alive (`KeepAlivePolicy`),
/// and a memory budget, when set, stops the idle instances that have waited longest first.
///
/// Pure bookkeeping: it starts and stops nothing itself, so every decision is testable with a
/// clock of the test's own; what it hands back to stop, the caller stops and confirms
/// (`confirmStopped`), so that shutdown can wait until no instance is left running.
public actor InstancePool<Instance: Sendable> {
    public struct Limits: Sendable {
        /// Invocations running at once on this agent, all functions together.
        public var admission: Int
        /// Invocations (so instances busy) of one function at once.
        public var perFunction: Int
        /// Bytes idle instances may hold together; nil for no budget.
        public var idleMemoryBudget: UInt64?

        public init(admission: Int, perFunction: Int, idleMemoryBudget: UInt64? = nil) {
            self.admission = admission
            self.perFunction = perFunction
            self.idleMemoryBudget = idleMemoryBudget
        }
    }

    /// What an invocation got.
    public enum Lease: Sendable {
        /// An idle instance of this code, now busy.
        case warm(Instance)
        /// Nothing idle: the caller starts an instance.
        case cold
    }

    struct Idle {
        var instance: Instance
        var code: String
        var since: Double
    }

    struct Function {
        var idle: [Idle] = []
        var busy = 0
        var history = ArrivalHistory()
    }

    /// What the pool holds now.
    public struct Census: Sendable, Equatable {
        public var busy: Int
        public var idle: Int
        public var idleMemory: UInt64
        /// Handed back to stop, not yet confirmed stopped.
        public var unstopped: Int
    }

    public let limits: Limits
    public let policy: KeepAlivePolicy
    let clock: @Sendable () -> Double
    /// Bytes an idle instance holds now (asked when the budget or the census needs it).
    let memory: @Sendable (Instance) -> UInt64
    /// Whether an idle instance can still serve (one whose next handler failed to start cannot).
    let usable: @Sendable (Instance) -> Bool
    var functions: [String: Function] = [:]
    var busy = 0
    /// Set at shutdown: nothing goes idle any more.
    var closed = false
    /// Instances handed back to stop whose stop is not confirmed yet (`confirmStopped`).
    var unstopped = 0

    /// - Parameters:
    ///   - clock: seconds on a monotonic clock.
    ///   - memory: bytes an idle instance holds now.
    ///   - usable: whether an idle instance can still serve; one that cannot is handed back to stop.
    public init(limits: Limits, policy: KeepAlivePolicy, clock: @escaping @Sendable () -> Double,
                memory: @escaping @Sendable (Instance) -> UInt64 = { _ in 0 },
                usable: @escaping @Sendable (Instance) -> Bool = { _ in true }) {
        self.limits = limits
        self.policy = policy
        self.clock = clock
        self.memory = memory
        self.usable = usable
    }

    /// A lease for one invocation of `function` whose code is `code` (manifest and settings
    /// revision): idle instances of other code, or no longer usable, are handed back in
    /// `stale`, to stop.
    ///
    /// - Throws: `LambdaError` 429 when the agent or the function is at its limit.
    public func acquire(_ function: String, code: String) throws(LambdaError) -> (lease: Lease, stale: [Instance]) {
        let now = clock()
        var entry = functions[function, default: Function()]
        entry.history.record(at: now)
        defer { functions[function] = entry }
        guard busy < limits.admission else {
            throw .tooManyRequests("Rate Exceeded. This agent runs \(limits.admission) invocations at once; try again shortly")
        }
        guard entry.busy < limits.perFunction else {
            throw .tooManyRequests("Rate Exceeded. Function \(function) runs \(limits.perFunction) invocations at once "
                                   + "(ReservedFunctionConcurrentInvocationLimitExceeded)")
        }
        // Only a lease granted sweeps the idle instances that cannot serve it: a refusal hands
        // nothing back.
        let keep = { (idle: Idle) in idle.code == code && self.usable(idle.instance) }
        let stale = handOver(entry.idle.filter { !keep($0) }.map(\.instance))
        entry.idle.removeAll { !keep($0) }
        entry.busy += 1
        busy += 1
        if let warm = entry.idle.popLast() { return (.warm(warm.instance), stale) }
        return (.cold, stale)
    }

    /// Ends a lease. A reusable `instance` (of `code`) goes idle; the instances the memory
    /// budget no longer admits come back, to stop.
    public func release(_ function: String, code: String, instance: Instance?) -> [Instance] {
        var entry = functions[function, default: Function()]
        entry.busy = max(0, entry.busy - 1)
        busy = max(0, busy - 1)
        if closed {
            functions[function] = entry
            return handOver(instance.map { [$0] } ?? [])
        }
        if let instance { entry.idle.append(Idle(instance: instance, code: code, since: clock())) }
        functions[function] = entry
        return handOver(overBudget())
    }

    /// Adds an idle instance of `function` (of `code`) made outside any lease, such as a microVM
    /// restored ahead of the next event; the instances the memory budget no longer admits come
    /// back, to stop (after a close, `instance` itself).
    public func adopt(_ function: String, code: String, instance: Instance) -> [Instance] {
        if closed { return handOver([instance]) }
        functions[function, default: Function()].idle.append(Idle(instance: instance, code: code, since: clock()))
        return handOver(overBudget())
    }

    /// Idle instances of `function` now.
    public func idleCount(of function: String) -> Int { functions[function]?.idle.count ?? 0 }

    /// Each function's recent arrivals, for policies kept outside the pool.
    public func histories() -> [String: ArrivalHistory] { functions.mapValues(\.history) }

    /// Ends a lease whose instance cannot serve again (its handler failed): it comes back, to stop.
    public func releaseRetired(_ function: String, instance: Instance) -> [Instance] {
        functions[function, default: Function()].busy = max(0, functions[function, default: Function()].busy - 1)
        busy = max(0, busy - 1)
        return handOver([instance])
    }

    /// Idle instances past their function's keep-alive, taken out of the pool to stop.
    public func expire() -> [Instance] {
        let now = clock()
        var expired: [Instance] = []
        for (name, var entry) in functions where !entry.idle.isEmpty {
            let keepAlive = policy.keepAlive(for: entry.history)
            let (old, kept) = (entry.idle.filter { now - $0.since >= keepAlive }, entry.idle.filter { now - $0.since < keepAlive })
            guard !old.isEmpty else { continue }
            expired += old.map(\.instance)
            entry.idle = kept
            functions[name] = entry
        }
        return handOver(expired)
    }

    /// Every idle instance of `function` (its code changed, or it was deleted), to stop.
    public func drain(_ function: String) -> [Instance] {
        guard var entry = functions[function] else { return [] }
        let idle = entry.idle.map(\.instance)
        entry.idle = []
        functions[function] = entry
        return handOver(idle)
    }

    /// Every idle instance, for shutdown; from now on a released instance comes straight back
    /// to be stopped.
    public func close() -> [Instance] {
        closed = true
        return functions.keys.flatMap { drain($0) }
    }

    /// The keep-alive `function` gets now, in seconds.
    public func keepAlive(of function: String) -> Double {
        policy.keepAlive(for: functions[function]?.history ?? ArrivalHistory())
    }

    /// The caller has stopped `count` instances this pool handed back.
    public func confirmStopped(_ count: Int) {
        unstopped = max(0, unstopped - count)
    }

    public var census: Census {
        let idle = functions.values.flatMap(\.idle)
        return Census(busy: busy, idle: idle.count, idleMemory: idle.reduce(0) { $0 + memory($1.instance) }, unstopped: unstopped)
    }

    /// Whether `close` was called.
    public var isClosed: Bool { closed }

    func handOver(_ instances: [Instance]) -> [Instance] {
        unstopped += instances.count
        return instances
    }

    /// While idle instances hold more than the budget, the longest idle leaves first.
    func overBudget() -> [Instance] {
        guard let budget = limits.idleMemoryBudget else { return [] }
        var held = census.idleMemory
        var evicted: [Instance] = []
        while held > budget {
            guard let (name, index) = functions.flatMap({ name, entry in entry.idle.indices.map { (name, $0) } })
                .min(by: { functions[$0.0]!.idle[$0.1].since < functions[$1.0]!.idle[$1.1].since }) else { break }
            let removed = functions[name]!.idle.remove(at: index)
            held -= min(held, memory(removed.instance))
            evicted.append(removed.instance)
        }
        return evicted
    }
}
