import ArgumentParser
import Foundation
import Logging
import ThawGC
import ThawMetadata
import ThawSeal
import ThawStore

/// `thaw roots list|rotate|clear-alarm`: the garbage-collection roots of a store.
struct Roots: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show and manage garbage-collection roots.",
        subcommands: [List.self, Rotate.self, ClearAlarm.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "list", abstract: "Each root with its state, age, manifests, chunks and bytes, starts using it, last read and alarm.")

        @OptionGroup var storeArguments: StoreArguments

        func run() async throws {
            do {
                let store = try await storeArguments.open(create: false)
                try await storeArguments.withMetadata(create: false) { metadata in
                    guard let metadata else {
                        print("no metadata at \(try storeArguments.metadataLocation): nothing has been pushed")
                        return
                    }
                    let now = Date()
                    print("ROOT    STATE     AGE      MANIFESTS  CHUNKS      BYTES  IN USE  LAST READ              ALARM")
                    let uses = Dictionary(grouping: try await metadata.uses(in: nil, now: now), by: \.root)
                    for root in try await metadata.roots() {
                        let manifests = try await metadata.manifests(in: root.id)
                        var chunks = 0
                        if root.state != .deleted {
                            for try await _ in store.list(under: StoreLayout.chunks(root: root.id)) { chunks += 1 }
                        }
                        // Every chunk of a manifest is one chunk size of ciphertext.
                        let sizes = Set(manifests.map { $0.imageSize / UInt64(max(1, $0.chunkCount)) })
                        let bytes = sizes.count == 1 ? mib(UInt64(chunks) * sizes.first!) : (chunks == 0 ? mib(0) : "?")
                        let read = root.lastReadAt.map { ISO8601DateFormatter().string(from: $0) } ?? "–"
                        print(root.id.value.padding(toLength: 6, withPad: " ", startingAt: 0) + "  "
                              + root.state.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0) + "  "
                              + Self.age(now.timeIntervalSince(root.createdAt)).padding(toLength: 7, withPad: " ", startingAt: 0) + "  "
                              + String(manifests.count).padding(toLength: 9, withPad: " ", startingAt: 0) + "  "
                              + String(chunks).padding(toLength: 6, withPad: " ", startingAt: 0) + "  "
                              + bytes.padding(toLength: 10, withPad: " ", startingAt: 0) + "  "
                              + String(uses[root.id]?.count ?? 0).padding(toLength: 6, withPad: " ", startingAt: 0) + "  "
                              + read.padding(toLength: 21, withPad: " ", startingAt: 0) + "  " + (root.alarm ?? "–"))
                    }
                }
            } catch {
                throw ValidationFailure(CommandErrors.describe(error))
            }
        }

        static func age(_ seconds: TimeInterval) -> String {
            switch seconds {
            case ..<3600: String(format: "%.0fm", seconds / 60)
            case ..<(2 * 86_400): String(format: "%.1fh", seconds / 3600)
            default: String(format: "%.1fd", seconds / 86_400)
            }
        }
    }

    struct Rotate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rotate", abstract: "Make a new root active; the active one is retired, and thaw gc copies its live manifests forward.")

        @Option(help: "The new root's id. (default: r and the next number)")
        var id: String?

        @OptionGroup var storeArguments: StoreArguments

        func run() async throws {
            do {
                try await storeArguments.withMetadata(create: true) { metadata in
                    let metadata = metadata!
                    let retired = try await metadata.activeRoot().id
                    let existing = try await metadata.roots().map(\.id)
                    let next = try id.map(RootID.init) ?? RootNaming.next(after: existing)
                    try await metadata.rotate(to: next, now: Date())
                    print("root \(next) is active; \(retired) is retired")
                }
            } catch {
                throw ValidationFailure(CommandErrors.describe(error))
            }
        }
    }

    struct ClearAlarm: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "clear-alarm", abstract: "Clear the alarm a read of an expired root raised, letting thaw gc delete it again.")

        @Argument(help: "The root.")
        var root: String

        @OptionGroup var storeArguments: StoreArguments

        func run() async throws {
            do {
                let id = try RootID(root)
                let cleared = try await storeArguments.withMetadata(create: false) { try await $0?.clearAlarm(root: id) ?? false }
                guard cleared else { throw ValidationFailure("root \(id) has no alarm to clear") }
                print("cleared the alarm of root \(id)")
            } catch {
                throw ValidationFailure(CommandErrors.describe(error))
            }
        }
    }
}

/// `thaw gc`: one garbage-collection run under the lease.
struct GC: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gc",
        abstract: "Move every root along its life: rotate when due, copy live manifests forward, expire, delete quiet expired roots.",
        discussion: """
            A retired root's manifests that a function name points at are re-sealed into the active root and \
            their names moved. A retired root nothing live is left in (no name points into it and no start \
            is using it) becomes expired. An expired root that \
            no agent has read for the quiet period is deleted as a whole; a read of it raises an alarm that \
            halts the deletion until thaw roots clear-alarm. Two runs at once do not both act: a lease in the \
            metadata lets one through.
            """)

    @Option(help: "Hours after which the active root is rotated; 0 rotates only by thaw roots rotate.")
    var rotationHours: Double = 0

    @Option(help: "Hours an expired root must go unread before it is deleted.")
    var quietHours: Double = 168

    @Option(help: "Chunks re-sealed at once during copy-forward.")
    var concurrency: Int = 8

    @Option(help: "Seconds a run holds the lease (renewed as it goes); another run may take over a lease a killed run left once it runs out.")
    var leaseSeconds: Double = 3600

    @Option(help: "Milliseconds added before every store read, to emulate a remote object store (benchmarks, tests).")
    var originLatency: Double = 0

    @OptionGroup var storeArguments: StoreArguments

    func run() async throws {
        guard rotationHours >= 0, quietHours >= 0, concurrency >= 1, leaseSeconds > 0, originLatency >= 0 else {
            throw ValidationFailure("--rotation-hours, --quiet-hours and --origin-latency must be >= 0, --concurrency >= 1, --lease-seconds > 0")
        }
        do {
            var store = try await storeArguments.open(create: false)
            if originLatency > 0 { store = LatencyStore(store, delay: .microseconds(Int64(originLatency * 1000))) }
            let report = try await storeArguments.withMetadata(create: true) { metadata in
                let policy = GCPolicy(rotationPeriod: rotationHours > 0 ? .seconds(rotationHours * 3600) : nil,
                                      quietPeriod: .seconds(quietHours * 3600), leaseDuration: .seconds(leaseSeconds),
                                      concurrency: concurrency)
                return try await GarbageCollector(metadata: metadata!, store: store, keys: storeArguments.keyProvider, policy: policy).run()
            }
            print(Self.describe(report))
        } catch {
            throw ValidationFailure(CommandErrors.describe(error))
        }
    }

    static func describe(_ report: GCReport) -> String {
        var lines: [String] = []
        if let rotated = report.rotatedTo { lines.append("rotated: \(rotated) is active") }
        for copy in report.copied {
            lines.append("copied forward: \(copy.from.prefix(16)) → \(copy.to.prefix(16)) (names: \(copy.names.map(\.value).joined(separator: ", ")))")
        }
        if report.bytesResealed > 0 { lines.append("re-sealed: \(mib(report.bytesResealed))") }
        for root in report.expired { lines.append("expired: \(root)") }
        for (root, objects) in report.deleted.sorted(by: { $0.key < $1.key }) { lines.append("deleted: \(root) (\(objects) objects)") }
        for (root, alarm) in report.halted.sorted(by: { $0.key < $1.key }) { lines.append("HALTED: \(root) is not deleted: \(alarm)") }
        for root in report.waiting { lines.append("waiting: \(root) is expired and in its quiet period") }
        for (root, uses) in report.inUse.sorted(by: { $0.key < $1.key }) {
            lines.append("in use: \(root) is kept while \(uses) start\(uses == 1 ? " uses" : "s use") it")
        }
        return lines.isEmpty ? "nothing to do" : lines.joined(separator: "\n")
    }
}
