import CISAL

/// A systematic Reed-Solomon code over GF(2^8): k data shards and m parity shards, any k of
/// which rebuild the data. Coding runs in ISA-L (Debian libisal-dev), whose vectorized kernels
/// are what let a worker rebuild chunks at memory speed; the matrix is ISA-L's Cauchy matrix
/// (the identity over rows `1 / (i ^ j)`), whose every k×k submatrix is invertible.
///
/// The tests check it against a plain Swift implementation of the same code on random data
/// and on every erasure pattern of (4, 1) and (4, 2).
public struct ReedSolomon: Sendable {
    public let dataShards: Int
    public let parityShards: Int
    /// The (k + m) × k encoding matrix, row-major.
    let matrix: [UInt8]
    /// ISA-L's expanded tables for the parity rows.
    let parityTables: [UInt8]

    public var totalShards: Int { dataShards + parityShards }

    /// - Throws: `ErasureError(.invalidParameters)` unless 1 ≤ k, 1 ≤ m and k + m ≤ 255.
    public init(dataShards k: Int, parityShards m: Int) throws {
        guard k >= 1, m >= 1, k + m <= 255 else {
            throw ErasureError(.invalidParameters, "a Reed-Solomon code needs k >= 1, m >= 1 and k + m <= 255 (got k = \(k), m = \(m))")
        }
        dataShards = k
        parityShards = m
        var matrix = [UInt8](repeating: 0, count: (k + m) * k)
        gf_gen_cauchy1_matrix(&matrix, Int32(k + m), Int32(k))
        self.matrix = matrix
        var tables = [UInt8](repeating: 0, count: k * m * 32)
        var parityRows = Array(matrix[(k * k)...])
        ec_init_tables(Int32(k), Int32(m), &parityRows, &tables)
        parityTables = tables
    }

    /// The m parity shards of k data shards of one length.
    ///
    /// - Throws: `ErasureError(.invalidShards)` for a wrong count or unequal lengths.
    public func parity(of data: [[UInt8]]) throws -> [[UInt8]] {
        let length = try checkedLength(data, expected: dataShards, what: "data shards")
        var parity = [[UInt8]](repeating: [UInt8](repeating: 0, count: length), count: parityShards)
        guard length > 0 else { return parity }
        Self.code(length: length, sources: data, tables: parityTables, outputs: &parity)
        return parity
    }

    /// The k data shards, rebuilt from any k or more of the k + m shards.
    ///
    /// - Parameter shards: shards by index: 0..<k are data, k..<k+m parity.
    /// - Throws: `ErasureError(.notEnoughShards)` with fewer than k, `.invalidShards` for an
    ///   index out of range or unequal lengths.
    public func data(from shards: [Int: [UInt8]]) throws -> [[UInt8]] {
        guard shards.keys.allSatisfy({ (0..<totalShards).contains($0) }) else {
            throw ErasureError(.invalidShards, "shard indices must be below \(totalShards) (got \(shards.keys.sorted()))")
        }
        guard shards.count >= dataShards else {
            throw ErasureError(.notEnoughShards, "\(shards.count) of \(totalShards) shards cannot rebuild \(dataShards) data shards")
        }
        let present = shards.keys.sorted()
        let length = try checkedLength(present.map { shards[$0]! }, expected: present.count, what: "shards")
        let missing = (0..<dataShards).filter { shards[$0] == nil }
        if missing.isEmpty { return (0..<dataShards).map { shards[$0]! } }
        // The first k shards present; invert the rows of the matrix that made them.
        let chosen = Array(present.prefix(dataShards))
        let k = dataShards
        var sub = [UInt8](repeating: 0, count: k * k)
        for (row, index) in chosen.enumerated() {
            for column in 0..<k { sub[row * k + column] = matrix[index * k + column] }
        }
        var inverse = [UInt8](repeating: 0, count: k * k)
        guard gf_invert_matrix(&sub, &inverse, Int32(k)) == 0 else {
            // Every k×k submatrix of a Cauchy-extended identity is invertible.
            preconditionFailure("the rows \(chosen) of the Cauchy matrix are singular")
        }
        var decodeRows: [UInt8] = []
        for index in missing { decodeRows += inverse[(index * k)..<(index * k + k)] }
        var tables = [UInt8](repeating: 0, count: k * missing.count * 32)
        ec_init_tables(Int32(k), Int32(missing.count), &decodeRows, &tables)
        var rebuilt = [[UInt8]](repeating: [UInt8](repeating: 0, count: length), count: missing.count)
        if length > 0 { Self.code(length: length, sources: chosen.map { shards[$0]! }, tables: tables, outputs: &rebuilt) }
        var data: [[UInt8]] = []
        var next = 0
        for index in 0..<k {
            if let shard = shards[index] {
                data.append(shard)
            } else {
                data.append(rebuilt[next])
                next += 1
            }
        }
        return data
    }

    func checkedLength(_ shards: [[UInt8]], expected: Int, what: String) throws -> Int {
        guard shards.count == expected else {
            throw ErasureError(.invalidShards, "expected \(expected) \(what), got \(shards.count)")
        }
        let length = shards.first?.count ?? 0
        guard shards.allSatisfy({ $0.count == length }) else {
            throw ErasureError(.invalidShards, "\(what) differ in length: \(shards.map(\.count))")
        }
        return length
    }

    /// ISA-L's `ec_encode_data`: each output is the dot product of the sources with one row of
    /// the expanded tables. The shards are copied into one block for the C call: a simple way
    /// to lend ISA-L k pointers at once, at the price of one copy (cheap beside the network).
    static func code(length: Int, sources: [[UInt8]], tables: [UInt8], outputs: inout [[UInt8]]) {
        let input = UnsafeMutablePointer<UInt8>.allocate(capacity: sources.count * length)
        let output = UnsafeMutablePointer<UInt8>.allocate(capacity: outputs.count * length)
        defer {
            input.deallocate()
            output.deallocate()
        }
        for (i, source) in sources.enumerated() {
            source.withUnsafeBufferPointer { (input + i * length).update(from: $0.baseAddress!, count: length) }
        }
        var sourcePointers: [UnsafeMutablePointer<UInt8>?] = (0..<sources.count).map { input + $0 * length }
        var outputPointers: [UnsafeMutablePointer<UInt8>?] = (0..<outputs.count).map { output + $0 * length }
        var tables = tables
        ec_encode_data(Int32(length), Int32(sources.count), Int32(outputs.count), &tables, &sourcePointers, &outputPointers)
        for i in 0..<outputs.count {
            outputs[i] = Array(UnsafeBufferPointer(start: output + i * length, count: length))
        }
    }
}
