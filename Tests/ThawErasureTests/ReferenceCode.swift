/// A straightforward Reed-Solomon code in plain Swift, to check ISA-L's against: GF(2^8) with
/// the polynomial x^8 + x^4 + x^3 + x^2 + 1 (0x11D) through log tables, the same Cauchy matrix,
/// byte-at-a-time dot products, and Gauss-Jordan inversion. Slow and obvious on purpose.
struct ReferenceCode {
    static let (exp, log): ([UInt8], [Int]) = {
        var exp = [UInt8](repeating: 0, count: 512)
        var log = [Int](repeating: 0, count: 256)
        var x = 1
        for i in 0..<255 {
            exp[i] = UInt8(x)
            log[x] = i
            x <<= 1
            if x & 0x100 != 0 { x ^= 0x11D }
        }
        for i in 255..<512 { exp[i] = exp[i - 255] }
        return (exp, log)
    }()

    static func mul(_ a: UInt8, _ b: UInt8) -> UInt8 {
        a == 0 || b == 0 ? 0 : exp[log[Int(a)] + log[Int(b)]]
    }

    static func inv(_ a: UInt8) -> UInt8 {
        precondition(a != 0)
        return exp[255 - log[Int(a)]]
    }

    let k: Int
    let m: Int

    /// Row r, column c: the identity for r < k, then 1 / (r ^ c).
    func coefficient(_ row: Int, _ column: Int) -> UInt8 {
        row < k ? (row == column ? 1 : 0) : Self.inv(UInt8(row ^ column))
    }

    func parity(of data: [[UInt8]]) -> [[UInt8]] {
        (k..<(k + m)).map { row in combine(data, coefficients: (0..<k).map { coefficient(row, $0) }) }
    }

    func combine(_ shards: [[UInt8]], coefficients: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: shards[0].count)
        for (shard, c) in zip(shards, coefficients) {
            for i in 0..<out.count { out[i] ^= Self.mul(c, shard[i]) }
        }
        return out
    }

    /// The data rebuilt from the first k shards present, by inverting their rows.
    func data(from shards: [Int: [UInt8]]) -> [[UInt8]] {
        let chosen = Array(shards.keys.sorted().prefix(k))
        var a = chosen.map { row in (0..<k).map { coefficient(row, $0) } }
        var b = (0..<k).map { r in (0..<k).map { $0 == r ? UInt8(1) : 0 } }
        for column in 0..<k {
            let pivot = (column..<k).first { a[$0][column] != 0 }!
            a.swapAt(column, pivot)
            b.swapAt(column, pivot)
            let scale = Self.inv(a[column][column])
            for j in 0..<k {
                a[column][j] = Self.mul(a[column][j], scale)
                b[column][j] = Self.mul(b[column][j], scale)
            }
            for r in 0..<k where r != column && a[r][column] != 0 {
                let factor = a[r][column]
                for j in 0..<k {
                    a[r][j] ^= Self.mul(factor, a[column][j])
                    b[r][j] ^= Self.mul(factor, b[column][j])
                }
            }
        }
        let sources = chosen.map { shards[$0]! }
        return (0..<k).map { combine(sources, coefficients: b[$0]) }
    }
}
