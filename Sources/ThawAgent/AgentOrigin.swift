public import ThawSeal
public import ThawStore

/// The origin store an agent serves from, the garbage-collection root its manifests live
/// under, and the tenant keys that open them.
public struct AgentOrigin: Sendable {
    public var store: any ChunkStore
    public var root: RootID
    public var keys: any TenantKeyProvider

    public init(store: any ChunkStore, root: RootID, keys: any TenantKeyProvider) {
        self.store = store
        self.root = root
        self.keys = keys
    }
}
