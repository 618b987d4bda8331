/// Which agent runs a function: rendezvous (highest random weight) hashing of the function's
/// name over the live agents. Every agent computes the same order from the same membership, so
/// a function's invocations land on one agent whichever agent they reach, and its instances
/// and cached chunks stay there (sticky placement). When an agent leaves, only its own
/// functions move, each to its next agent in order; when one joins, it takes only the
/// functions it now ranks first for.
///
/// Hand-written: the hash only needs to spread names evenly and be the same in every process
/// (Swift's `Hasher` is seeded per process), so it is FNV-1a with a final mix.
public enum Placement {
    /// `agents` (ids) in the order `function` prefers them: the first is its home.
    public static func order(of function: String, among agents: [String]) -> [String] {
        agents.map { ($0, weight(function, $0)) }
            .sorted { $0.1 != $1.1 ? $0.1 > $1.1 : $0.0 < $1.0 }
            .map(\.0)
    }

    static func weight(_ function: String, _ agent: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in agent.utf8 + [0] + function.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        // FNV-1a alone leaves similar names close; a 64-bit finalizer spreads them.
        hash ^= hash >> 33
        hash &*= 0xff51_afd7_ed55_8ccd
        hash ^= hash >> 33
        hash &*= 0xc4ce_b9fe_1a85_ec53
        hash ^= hash >> 33
        return hash
    }
}
