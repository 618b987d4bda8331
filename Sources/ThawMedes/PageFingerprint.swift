/// A value-sampled fingerprint of a memory page, after Medes (Saxena et al., EuroSys'22): the
/// hashes of every 64-byte window of the page are computed, and the few smallest are kept.
/// The choice depends on the windows' values, not their offsets, so a page whose content moved
/// by some bytes keeps most of its samples, and two pages sharing a sample share a window.
///
/// Windows of one repeated byte (runs of zeros, fill patterns) are not sampled: they occur in
/// almost every page and would make every page look like a base for every other.
///
/// Hand-written: no package here offers content-defined page sampling.
public struct PageFingerprint: Sendable, Hashable {
    /// Bytes per sampled window.
    public static let windowSize = 64
    /// Samples kept per page at most (fewer when the page has fewer distinct windows).
    public static let sampleCount = 4

    /// The kept window hashes, ascending and distinct.
    public let samples: [UInt64]

    /// Fingerprints `page` (any length; pages shorter than a window have no samples).
    public init(page: some RandomAccessCollection<UInt8>) {
        samples = Self.sample(Array(page))
    }

    public var isEmpty: Bool { samples.isEmpty }

    /// The number of samples `self` and `other` share.
    public func matches(_ other: PageFingerprint) -> Int {
        var count = 0, i = 0, j = 0
        while i < samples.count, j < other.samples.count {
            if samples[i] == other.samples[j] {
                count += 1
                i += 1
                j += 1
            } else if samples[i] < other.samples[j] {
                i += 1
            } else {
                j += 1
            }
        }
        return count
    }

    /// The polynomial rolling hash's multiplier (odd, so multiplication is a bijection mod 2^64).
    static let base: UInt64 = 0x100_0000_01b3
    /// base^(windowSize - 1): the weight of the byte leaving the window.
    static let outgoingWeight: UInt64 = {
        var weight: UInt64 = 1
        for _ in 1..<windowSize { weight = weight &* base }
        return weight
    }()

    static func sample(_ page: [UInt8]) -> [UInt64] {
        let window = windowSize
        guard page.count >= window else { return [] }
        var kept: [UInt64] = []  // ascending, at most sampleCount
        var rolling: UInt64 = 0
        var run = 0  // length of the run of equal bytes ending at the current byte
        for index in 0..<page.count {
            let byte = page[index]
            run = index > 0 && page[index - 1] == byte ? run + 1 : 1
            if index >= window {
                rolling = rolling &- (UInt64(page[index - window]) &+ 1) &* outgoingWeight
            }
            rolling = rolling &* base &+ UInt64(byte) &+ 1
            guard index >= window - 1, run < window else { continue }
            let value = mix(rolling)
            if kept.count == sampleCount, value >= kept[sampleCount - 1] { continue }
            var position = kept.count
            while position > 0, kept[position - 1] > value { position -= 1 }
            if position > 0, kept[position - 1] == value { continue }
            kept.insert(value, at: position)
            if kept.count > sampleCount { kept.removeLast() }
        }
        return kept
    }

    /// A bijective finaliser (SplitMix64's), so that sampling by value is uniform even where the
    /// polynomial hash is not.
    static func mix(_ value: UInt64) -> UInt64 {
        var z = value &+ 0x9e37_79b9_7f4a_7c15
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
