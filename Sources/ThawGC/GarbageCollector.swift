public import Foundation
public import Logging
public import ThawMetadata
public import ThawSeal
public import ThawStore

/// What garbage collection may do, and when.
public struct GCPolicy: Sendable {
    /// Rotate when the active root is older than this; nil rotates only when asked (`thaw roots rotate`).
    public var rotationPeriod: Duration?
    /// An expired root is deleted once nothing has read it, and it has been expired, this long.
    public var quietPeriod: Duration
    /// How long one run may hold the lease before another may take it over; a run renews it
    /// before each manifest it copies and each root it deletes.
    public var leaseDuration: Duration
    /// Chunks re-sealed at once during copy-forward.
    public var concurrency: Int

    public init(rotationPeriod: Duration? = nil, quietPeriod: Duration = .seconds(7 * 86_400),
                leaseDuration: Duration = .seconds(3_600), concurrency: Int = 8) {
        self.rotationPeriod = rotationPeriod
        self.quietPeriod = quietPeriod
        self.leaseDuration = leaseDuration
        self.concurrency = max(1, concurrency)
    }
}

/// What one run did.
public struct GCReport: Sendable, Equatable {
    public struct Copy: Sendable, Equatable {
        public var from: String
        public var to: String
        public var names: [FunctionName]
    }

    /// The root made active by this run's rotation, if it rotated.
    public var rotatedTo: RootID?
    public var copied: [Copy] = []
    /// Plaintext bytes re-sealed into the active root.
    public var bytesResealed: UInt64 = 0
    public var expired: [RootID] = []
    /// Roots deleted, with the objects removed from each.
    public var deleted: [RootID: Int] = [:]
    /// Expired roots whose deletion an alarm halts, with the alarm.
    public var halted: [RootID: String] = [:]
    /// Expired roots still in their quiet period.
    public var waiting: [RootID] = []
    /// Retired roots kept from expiring because a start is using a manifest in them, with the
    /// number of uses.
    public var inUse: [RootID: Int] = [:]

    public init() {}
}

/// Why a garbage collection did not run or stopped.
public struct GCError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable { case leaseHeld, leaseLost, copyFailed }
    public let kind: Kind
    public let description: String

    init(_ kind: Kind, _ description: String) {
        self.kind = kind
        self.description = description
    }
}

/// Garbage collection by rotating roots (DESIGN §6): no reference counts. One run takes the
/// lease and moves every root one step along its life, as far as it may:
///
/// 1. **rotate**: when the policy's rotation period has passed, a new root becomes active and
///    the old one is retired;
/// 2. **copy forward**: each manifest in a retired root that a function name points at is
///    re-sealed into the active root (its chunks under the new root's salt, its image config
///    and access record with it), and the name moved to the copy, only if it still points at
///    the original; a retired root no name points into, and no start is using, becomes expired;
/// 3. **delete**: an expired root with no alarm, quiet for the policy's period, is deleted as a
///    whole (one prefix of the store) and marked deleted.
///
/// Every step is idempotent, so a run killed at any point is finished by the next. A read of an
/// expired root reported to the metadata sets an alarm that halts its deletion until an
/// operator clears it.
public struct GarbageCollector: Sendable {
    public let metadata: any MetadataStore
    public let store: any ChunkStore
    public let keys: any TenantKeyProvider
    public let policy: GCPolicy
    public let clock: @Sendable () -> Date
    public let holder: String
    public let logger: Logger

    public static let leaseName = "gc"

    public init(metadata: any MetadataStore, store: any ChunkStore, keys: any TenantKeyProvider, policy: GCPolicy = GCPolicy(),
                clock: @escaping @Sendable () -> Date = { Date() }, holder: String? = nil, logger: Logger = Logger(label: "thaw.gc")) {
        self.metadata = metadata
        self.store = store
        self.keys = keys
        self.policy = policy
        self.clock = clock
        self.holder = holder ?? "\(ProcessInfo.processInfo.hostName):\(getpid()):\(UUID().uuidString.prefix(8))"
        self.logger = logger
    }

    /// One run under the lease.
    ///
    /// - Throws: `GCError(.leaseHeld)` when another run holds the lease; store, seal and
    ///   metadata errors as they come (the run stops; the next one goes on from there).
    public func run() async throws -> GCReport {
        guard try await metadata.acquireLease(Self.leaseName, holder: holder, now: clock(), duration: policy.leaseDuration) else {
            throw GCError(.leaseHeld, "another garbage collection holds the lease in \(metadata.location); it runs at most \(policy.leaseDuration)")
        }
        do {
            let report = try await steps()
            try await metadata.releaseLease(Self.leaseName, holder: holder)
            return report
        } catch {
            try? await metadata.releaseLease(Self.leaseName, holder: holder)
            throw error
        }
    }

    func steps() async throws -> GCReport {
        var report = GCReport()
        if let period = policy.rotationPeriod {
            let active = try await metadata.activeRoot()
            if clock().timeIntervalSince(active.stateChangedAt) >= period.seconds {
                let next = try RootNaming.next(after: try await metadata.roots().map(\.id))
                try await metadata.rotate(to: next, now: clock())
                report.rotatedTo = next
                logger.notice("rotated roots", metadata: ["retired": "\(active.id)", "active": "\(next)"])
            }
        }
        let active = try await metadata.activeRoot()
        for root in try await metadata.roots() where root.state == .retired {
            try await copyForward(from: root.id, to: active.id, report: &report)
            let stillNamed = try await metadata.functions().contains { $0.root == root.id }
            guard !stillNamed else { continue }
            if try await metadata.expireUnlessInUse(root.id, now: clock()) {
                report.expired.append(root.id)
                logger.notice("root expired: nothing live is left in it", metadata: ["root": "\(root.id)"])
            } else if case let uses = try await metadata.uses(in: root.id, now: clock()), !uses.isEmpty {
                report.inUse[root.id] = uses.count
                logger.notice("retired root kept: starts are using it", metadata: [
                    "root": "\(root.id)", "uses": "\(uses.count)", "holders": "\(Set(uses.map(\.holder)).sorted().joined(separator: ","))",
                ])
            }
        }
        for root in try await metadata.roots() where root.state == .expired {
            try await deleteIfQuiet(root, report: &report)
        }
        return report
    }

    /// Copies every named manifest of `from` into `to`, and moves its names.
    func copyForward(from: RootID, to: RootID, report: inout GCReport) async throws {
        let named = Dictionary(grouping: try await metadata.functions().filter { $0.root == from }, by: \.manifestID)
        var resealed: [ChunkName: ChunkRef] = [:]
        for (manifestID, functions) in named.sorted(by: { $0.key < $1.key }) {
            try await renewLease()
            let tenant = functions[0].tenant
            let copy = try await ManifestCopier(store: store, keys: keys, concurrency: policy.concurrency)
                .copy(manifestID: manifestID, tenant: tenant, from: from, to: to, resealed: &resealed)
            try await metadata.addManifest(ManifestRecord(id: copy.manifest.header.id, root: to, tenant: tenant,
                                                          imageSize: copy.manifest.header.imageSize,
                                                          chunkCount: copy.manifest.header.chunkCount, createdAt: clock()))
            var moved: [FunctionName] = []
            for function in functions {
                // The same code in another root: the name keeps when its code last changed.
                let target = FunctionRecord(name: function.name, manifestID: copy.manifest.header.id, root: to, tenant: tenant,
                                            updatedAt: function.updatedAt)
                if try await metadata.moveFunction(target, fromManifest: manifestID, root: from) { moved.append(function.name) }
            }
            report.copied.append(.init(from: manifestID, to: copy.manifest.header.id, names: moved))
            report.bytesResealed += copy.bytesResealed
            logger.notice("copied forward", metadata: [
                "manifest": "\(manifestID)", "copy": "\(copy.manifest.header.id)", "from": "\(from)", "to": "\(to)",
                "names": "\(moved.map(\.value).joined(separator: ","))",
            ])
        }
    }

    /// Renews this run's lease, so a long run keeps it; a run that lost it (it ran past the
    /// lease, and another run took over) stops before it does anything more.
    func renewLease() async throws {
        guard try await metadata.acquireLease(Self.leaseName, holder: holder, now: clock(), duration: policy.leaseDuration) else {
            throw GCError(.leaseLost, "this garbage collection ran past its lease of \(policy.leaseDuration) and another run took it over in \(metadata.location); it stopped")
        }
    }

    func deleteIfQuiet(_ root: RootRecord, report: inout GCReport) async throws {
        if let alarm = root.alarm {
            report.halted[root.id] = alarm
            logger.critical("deletion of an expired root halted: it was read", metadata: ["root": "\(root.id)", "alarm": "\(alarm)"])
            return
        }
        let lastActivity = max(root.stateChangedAt, root.lastReadAt ?? .distantPast)
        guard clock().timeIntervalSince(lastActivity) >= policy.quietPeriod.seconds else {
            report.waiting.append(root.id)
            return
        }
        // Look again just before deleting: an alarm raised since halts it.
        guard let current = try await metadata.root(root.id), current.state == .expired, current.alarm == nil else {
            if let alarm = try await metadata.root(root.id)?.alarm { report.halted[root.id] = alarm }
            return
        }
        // A start that began using the root after it expired keeps it too (its reads raise the
        // alarm at the agent's next report).
        let uses = try await metadata.uses(in: root.id, now: clock())
        guard uses.isEmpty else {
            report.inUse[root.id] = uses.count
            logger.critical("an expired root is in use: its deletion waits", metadata: ["root": "\(root.id)", "uses": "\(uses.count)"])
            return
        }
        try await renewLease()
        let removed = try await store.deleteAll(under: StoreLayout.root(root.id))
        for manifest in try await metadata.manifests(in: root.id) {
            try await metadata.removeManifest(id: manifest.id, root: root.id)
        }
        _ = try await metadata.transition(root.id, from: .expired, to: .deleted, now: clock())
        report.deleted[root.id] = removed
        logger.notice("root deleted", metadata: ["root": "\(root.id)", "objects": "\(removed)"])
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// Root ids made by rotation: `r` and a number of at least four digits, one past the highest.
public enum RootNaming {
    public static func next(after roots: [RootID]) throws -> RootID {
        let numbers = roots.compactMap { id -> Int? in
            guard id.value.hasPrefix("r") else { return nil }
            return Int(id.value.dropFirst())
        }
        return try RootID("r" + String(format: "%04d", (numbers.max() ?? 0) + 1))
    }
}
