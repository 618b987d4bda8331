import Testing
import ThawMedes
import ThawTestSupport

/// Property tests of the page patch codec: every patch rebuilds its target, similar pages give
/// small patches, and no input makes the reader crash or return bytes the format does not allow.
@Suite struct PagePatchTests {
    static let page = 4096
    static let randomPage: [UInt8] = {
        var random = SeededGenerator(seed: 5)
        return random.bytes(page)
    }()

    /// A target derived from `base` by one kind of change, as pages of similar processes differ.
    static func variant(of base: [UInt8], kind: Int, _ random: inout SeededGenerator) -> [UInt8] {
        var target = base
        switch kind {
        case 0:  // unrelated
            target = random.bytes(base.count)
        case 1:  // scattered byte edits
            for _ in 0..<Int.random(in: 1...40, using: &random) where !target.isEmpty {
                target[Int.random(in: 0..<target.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
            }
        case 2:  // an insertion that shifts the rest (the page keeps its length)
            let at = Int.random(in: 0...target.count, using: &random)
            target.insert(contentsOf: random.bytes(Int.random(in: 1...200, using: &random)), at: at)
            target.removeLast(target.count - base.count)
        case 3:  // a deletion, the end filled with new bytes
            let at = Int.random(in: 0..<max(target.count, 1), using: &random)
            let count = min(Int.random(in: 1...200, using: &random), target.count - at)
            target.removeSubrange(at..<(at + count))
            target += random.bytes(count)
        default:  // a block moved elsewhere in the page
            guard target.count > 64 else { return target }
            let from = Int.random(in: 0..<(target.count - 64), using: &random)
            let to = Int.random(in: 0..<(target.count - 64), using: &random)
            let block = Array(target[from..<(from + 64)])
            target.replaceSubrange(to..<(to + 64), with: block)
        }
        return target
    }

    @Test func everyPatchRebuildsItsTarget() throws {
        for seed in UInt64(1)...400 {
            var random = SeededGenerator(seed: seed)
            let base = random.bytes(Self.page)
            let target = Self.variant(of: base, kind: Int(seed % 5), &random)
            let patch = PagePatch.encode(target, against: base)
            #expect(try PagePatch.apply(patch, to: base) == target, "seed \(seed)")
            // Never much longer than the page stored whole: literal runs cost a few bytes each.
            #expect(patch.count <= target.count + 8, "seed \(seed): \(patch.count) bytes")
        }
    }

    @Test func similarPagesGiveSmallPatches() throws {
        var random = SeededGenerator(seed: 99)
        let base = random.bytes(Self.page)
        #expect(PagePatch.encode(base, against: base).count <= 8, "an identical page is one copy")

        var edited = base
        edited.replaceSubrange(1000..<1016, with: random.bytes(16))
        #expect(PagePatch.encode(edited, against: base).count <= 40)

        var shifted = random.bytes(7) + base
        shifted.removeLast(7)
        let patch = PagePatch.encode(shifted, against: base)
        #expect(patch.count <= 24, "content moved by 7 bytes is one copy and a literal: \(patch.count) bytes")
        #expect(try PagePatch.apply(patch, to: base) == shifted)

        #expect(PagePatch.encode(random.bytes(Self.page), against: base, limit: 1024) == nil, "an unrelated page is refused")
        #expect(PagePatch.encode(edited, against: base, limit: 1024) != nil)
    }

    static func fill(_ byte: UInt8, _ count: Int = 4096) -> [UInt8] { [UInt8](repeating: byte, count: count) }
    static func periodic(_ period: Int, scale: Int = 1) -> [UInt8] {
        (0..<4096).map { UInt8(truncatingIfNeeded: ($0 % period) * scale) }
    }

    /// Pairs of (target, base) a greedy encoder could get wrong: fillers, periods, empty and tiny pages.
    static let adversarial: [(String, [UInt8], [UInt8])] = [
        ("zeros against random", fill(0), randomPage),
        ("fill against fill", fill(0xff), fill(0xfe)),
        ("period 1 in period 3", fill(7), periodic(3)),
        ("period 2 in period 64", periodic(2), periodic(64)),
        ("period 4095", periodic(4095), periodic(4096)),
        ("empty base", fill(1), []),
        ("empty target", [], fill(1)),
        ("one byte", [9], [9]),
        ("short base", periodic(4096, scale: 31), [0, 31, 62]),
    ]

    @Test(arguments: adversarial)
    func adversarialPagesRoundTrip(name: String, target: [UInt8], base: [UInt8]) throws {
        for (t, b) in [(target, base), (base, target)] {
            let patch = PagePatch.encode(t, against: b)
            #expect(try PagePatch.apply(patch, to: b) == t, "\(name)")
            #expect(patch.count <= t.count + 8, "\(name): \(patch.count) bytes")
        }
    }

    @Test func everyTruncationIsRefused() throws {
        var random = SeededGenerator(seed: 3)
        let base = random.bytes(Self.page)
        for kind in 0..<5 {
            let patch = PagePatch.encode(Self.variant(of: base, kind: kind, &random), against: base)
            for length in 0..<patch.count {
                #expect(throws: PatchError.self, "kind \(kind), cut at \(length) of \(patch.count)") {
                    try PagePatch.apply(Array(patch[0..<length]), to: base)
                }
            }
        }
    }

    /// Corrupted and random patches either fail with a `PatchError` or rebuild exactly the
    /// length they declare; none crashes the reader (an out-of-range read would trap).
    @Test func damagedAndRandomPatchesNeverCrashTheReader() throws {
        var random = SeededGenerator(seed: 11)
        let base = random.bytes(Self.page)
        var inputs: [[UInt8]] = []
        for kind in 0..<5 {
            let patch = PagePatch.encode(Self.variant(of: base, kind: kind, &random), against: base)
            for index in 0..<patch.count {
                var damaged = patch
                damaged[index] ^= UInt8.random(in: 1...255, using: &random)
                inputs.append(damaged)
            }
        }
        for _ in 0..<2000 {
            inputs.append([1] + random.bytes(Int.random(in: 0...64, using: &random)))
        }
        for input in inputs {
            do {
                let rebuilt = try PagePatch.apply(input, to: base)
                var reader = input.dropFirst()
                var declared: UInt64 = 0, shift: UInt64 = 0
                while let byte = reader.popFirst() {
                    declared |= UInt64(byte & 0x7f) << shift
                    shift += 7
                    if byte & 0x80 == 0 { break }
                }
                #expect(UInt64(rebuilt.count) == declared)
            } catch {
                // Refused with a PatchError (typed throws): the other allowed outcome.
            }
        }
    }

    @Test func malformedPatchesNameWhatIsWrong() throws {
        let base = [UInt8](repeating: 1, count: 16)
        func failure(_ patch: [UInt8]) -> PatchError? {
            do {
                _ = try PagePatch.apply(patch, to: base)
                return nil
            } catch {
                return error
            }
        }
        #expect(failure([2, 0])?.kind == .unsupportedVersion)
        #expect(failure([1, 4, 0, 14, 4])?.description.contains("past the base page's 16 bytes") == true)
        #expect(failure([1, 2, 1, 3, 9, 9, 9])?.description.contains("2 bytes of the target are left") == true)
        #expect(failure([1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01])?.description.contains("not a 64-bit varint") == true)
        #expect(failure([1, 0x80, 0x80, 0x80, 0x80, 0x01])?.description.contains("more than") == true)
        #expect(failure([1, 2, 7, 1])?.description.contains("unknown operation 7") == true)
        #expect(failure([1, 4, 0, 0, 2])?.kind == .truncated, "two of four bytes")
        #expect(try PagePatch.apply([1, 0], to: base) == [])
    }
}
