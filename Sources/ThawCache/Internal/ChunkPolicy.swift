/// The policy a tier was configured with, without an existential: each call goes to a
/// concrete policy specialised for `CacheKey`, where a call through `any EvictionPolicy`
/// would run unspecialised generic code on the read path.
///
/// Exactly one of the three is set. They are optionals in a struct rather than enum cases
/// because an optional is changed in place through `!`, while taking an enum's payload out to
/// change it copies the policy (a retain and release of each of its arrays) on every call.
struct ChunkPolicy: EvictionPolicy {
    private var lruK: LRUKPolicy<CacheKey>?
    private var lru: LRUPolicy<CacheKey>?
    private var fifo: FIFOPolicy<CacheKey>?

    init(_ choice: EvictionPolicyChoice) {
        switch choice {
        case .lruK(let parameters): lruK = LRUKPolicy(parameters)
        case .lru: lru = LRUPolicy()
        case .fifo: fifo = FIFOPolicy()
        }
    }

    var count: Int { lruK?.count ?? lru?.count ?? fifo!.count }
    var bytes: Int { lruK?.bytes ?? lru?.bytes ?? fifo!.bytes }

    func contains(_ key: CacheKey) -> Bool {
        lruK?.contains(key) ?? lru?.contains(key) ?? fifo!.contains(key)
    }

    func victim() -> CacheKey? {
        if lruK != nil { return lruK!.victim() }
        if lru != nil { return lru!.victim() }
        return fifo!.victim()
    }

    mutating func insert(_ key: CacheKey, size: Int) {
        if lruK != nil { lruK!.insert(key, size: size) } else if lru != nil { lru!.insert(key, size: size) } else { fifo!.insert(key, size: size) }
    }

    mutating func recordAccess(_ key: CacheKey) {
        if lruK != nil { lruK!.recordAccess(key) } else if lru != nil { lru!.recordAccess(key) }  // FIFO ignores references
    }

    @discardableResult
    mutating func remove(_ key: CacheKey) -> Int? {
        if lruK != nil { return lruK!.remove(key) }
        if lru != nil { return lru!.remove(key) }
        return fifo!.remove(key)
    }

    mutating func evict() -> (key: CacheKey, size: Int)? {
        if lruK != nil { return lruK!.evict() }
        if lru != nil { return lru!.evict() }
        return fifo!.evict()
    }
}
