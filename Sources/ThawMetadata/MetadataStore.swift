public import Foundation
public import ThawSeal

/// Thaw's metadata: roots and their states, pushed manifests, function names, per-root read
/// marks and the garbage collector's lease. Two real implementations share one schema and
/// one body of SQL (`SQLMetadataStore`): SQLite through GRDB, the embedded default, and
/// PostgreSQL through postgres-nio, for several workers sharing one origin.
///
/// Times come from the caller, never from the database's clock, so tests drive the whole
/// lifecycle with an injected clock.
public protocol MetadataStore: Sendable {
    /// Where the metadata lives, for messages: a file path or a PostgreSQL address.
    var location: String { get }

    /// Creates the tables when missing, and the initial root, active, when there is no root.
    func prepare(now: Date) async throws

    func roots() async throws -> [RootRecord]
    func root(_ id: RootID) async throws -> RootRecord?
    /// The root new pushes go to.
    func activeRoot() async throws -> RootRecord
    /// Makes `id` the active root and retires the one that was active, in one transaction.
    ///
    /// - Throws: `MetadataError(.conflict)` when `id` already exists.
    func rotate(to id: RootID, now: Date) async throws
    /// Moves a root from `from` to `to` if it is in `from`; false when it was not.
    func transition(_ id: RootID, from: RootState, to: RootState, now: Date) async throws -> Bool
    /// Notes that an agent read from root `id` at `time`. A read of an expired root also sets
    /// its alarm (when none is set). Returns the root as it is after the read.
    @discardableResult
    func noteRead(root id: RootID, at time: Date, by reader: String) async throws -> RootRecord?
    /// Moves a retired root to expired, unless a start is using a manifest in it (a use that
    /// runs past `now`); false when it did not move. One statement, so a use that lands after
    /// it finds the root expired, and its reads raise the alarm.
    func expireUnlessInUse(_ id: RootID, now: Date) async throws -> Bool
    /// Clears a root's alarm (an operator's decision); false when the root has none.
    func clearAlarm(root id: RootID) async throws -> Bool

    /// Records a pushed manifest; recording it again changes nothing.
    func addManifest(_ manifest: ManifestRecord) async throws
    func manifests(in root: RootID?) async throws -> [ManifestRecord]
    /// The manifests recorded with exactly this id, in any root: one lookup by key, so a start
    /// can name a manifest's object without listing the store.
    func manifests(withID id: String) async throws -> [ManifestRecord]
    func removeManifest(id: String, root: RootID) async throws

    /// Points `name` at a manifest, replacing what it pointed at.
    func setFunction(_ function: FunctionRecord) async throws
    func function(named name: FunctionName) async throws -> FunctionRecord?
    func functions() async throws -> [FunctionRecord]
    /// Points a name at `function`'s manifest only if it still points at `manifestID` in
    /// `root` (garbage collection's copy-forward: a push that moved the name meanwhile wins).
    func moveFunction(_ function: FunctionRecord, fromManifest manifestID: String, root: RootID) async throws -> Bool
    /// Removes a name, and its settings; false when there was no name.
    func removeFunction(named name: FunctionName) async throws -> Bool
    /// Stores what a service keeps about a function beside its name (the invoke API's
    /// configuration, as a JSON document the metadata does not look into), replacing what was there.
    func setFunctionSettings(_ document: String, for name: FunctionName) async throws
    func functionSettings(named name: FunctionName) async throws -> String?

    /// Notes that `holder` is using a manifest until `until` (a start began), or renews that
    /// use. Returns the root as it is now, so the caller can warn about a root no longer live.
    @discardableResult
    func beginUse(manifest id: String, root: RootID, by holder: String, until: Date) async throws -> RootRecord?
    /// Ends `holder`'s use of a manifest (the start ended); ending a use that is gone succeeds.
    func endUse(manifest id: String, root: RootID, by holder: String) async throws
    /// Uses that run past `now`, in `root` or in every root.
    func uses(in root: RootID?, now: Date) async throws -> [UseRecord]

    /// Takes or renews the lease `name` for `holder` until `now + duration`, unless another
    /// holder's lease is still running. Returns whether `holder` holds it now.
    func acquireLease(_ name: String, holder: String, now: Date, duration: Duration) async throws -> Bool
    /// Gives the lease up if `holder` holds it.
    func releaseLease(_ name: String, holder: String) async throws

    /// Registers an invoke-service agent, or renews its heartbeat. Returns whether it was
    /// registered already (false: new, or removed meanwhile as silent).
    @discardableResult
    func heartbeat(_ agent: AgentRecord) async throws -> Bool
    func agents() async throws -> [AgentRecord]
    /// Removes an agent and its instances (it stopped, or went silent); false when it was gone.
    @discardableResult
    func removeAgent(id: String) async throws -> Bool

    /// Records an instance, or its new state.
    func setInstance(_ instance: InstanceRecord) async throws
    /// Removes an instance (it was stopped); removing one that is gone succeeds.
    func removeInstance(id: String) async throws
    /// Kept instances, of one function or of all.
    func instances(of function: FunctionName?) async throws -> [InstanceRecord]

    /// Closes connections.
    func close() async
}
