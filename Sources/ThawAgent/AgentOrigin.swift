public import ThawMetadata
public import ThawSeal
public import ThawStore

/// The origin store an agent serves from, the garbage-collection roots its manifests are looked
/// up in, the tenant keys that open them, and the metadata it reports its reads to.
public struct AgentOrigin: Sendable {
    public var store: any ChunkStore
    /// Where a manifest id is looked for, in order (a manifest's header names its root, and
    /// its chunks are read from there).
    public var roots: [RootID]
    public var keys: any TenantKeyProvider
    /// Where the agent notes, per root, that it read (garbage collection's read marks, and the
    /// alarm when a root being expired is read); nil reports nothing.
    public var metadata: (any MetadataStore)?

    public init(store: any ChunkStore, roots: [RootID], keys: any TenantKeyProvider, metadata: (any MetadataStore)? = nil) {
        self.store = store
        self.roots = roots
        self.keys = keys
        self.metadata = metadata
    }
}
