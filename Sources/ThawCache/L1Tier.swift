/// The tier of the L1 cache that answered a lookup.
public enum L1Tier: String, Sendable, Hashable, CaseIterable {
    case memory
    case disk
}
