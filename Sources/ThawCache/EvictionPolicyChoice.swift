/// Which eviction policy a cache's tiers use, as a configuration value.
public enum EvictionPolicyChoice: Sendable, Hashable {
    /// LRU-K, the default (see `LRUKPolicy`).
    case lruK(LRUKParameters)
    case lru
    case fifo

    /// LRU-K with K = 2 and the default periods.
    public static var `default`: EvictionPolicyChoice { .lruK(LRUKParameters()) }

    /// A new, empty policy of this kind, for code that works on any policy. The cache's tiers
    /// do not go through this existential: they hold the concrete policy, which is faster.
    public func makePolicy<Key: Hashable & Sendable>(for _: Key.Type = Key.self) -> any EvictionPolicy<Key> {
        switch self {
        case .lruK(let parameters): LRUKPolicy<Key>(parameters)
        case .lru: LRUPolicy<Key>()
        case .fifo: FIFOPolicy<Key>()
        }
    }
}
