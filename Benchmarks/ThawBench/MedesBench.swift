import Foundation
import ThawMedes

/// `thaw-bench medes [--patch-limit BYTES] [--bases N] RAM_FILE...`: what similar-page
/// deduplication would store for the memory snapshots whose RAM files are given (`thaw pull` of
/// each snapshot's memory manifest). The first N files (default 1) are the bases; every page of
/// the others is zero, identical to a page stored before, a patch against a base page, or
/// stored whole (`SnapshotDeduplicator`). Then every patch is applied again, to time rebuilding.
/// Prints one line per figure, `name value`:
/// `raw-bytes`, `identical-only-bytes`, `with-patches-bytes`, `patched-pages`, `patch-bytes`,
/// `whole-pages`, `identical-pages`, `plan-seconds`, `rebuild-us-per-page`.
enum MedesBench {
    static func run(_ arguments: [String]) throws {
        var files: [String] = []
        var limit = 2048, bases = 1
        var rest = arguments[...]
        while let argument = rest.popFirst() {
            switch argument {
            case "--patch-limit": limit = Int(rest.popFirst() ?? "") ?? -1
            case "--bases": bases = Int(rest.popFirst() ?? "") ?? -1
            default: files.append(argument)
            }
        }
        guard limit > 0, bases > 0, files.count > bases else {
            throw BenchError("usage: thaw-bench medes [--patch-limit BYTES] [--bases N] BASE_RAM... RAM...")
        }
        let clock = ContinuousClock()
        var dedup = SnapshotDeduplicator(patchLimit: limit)
        var patches: [(base: [UInt8], patch: [UInt8], page: [UInt8])] = []
        let planning = try clock.measure {
            for file in files.prefix(bases) { dedup.addBase(pages: try pages(of: file)) }
            for file in files.dropFirst(bases) {
                for (number, page) in try pages(of: file).enumerated() {
                    if case .patch = dedup.add(page: page, number: number), patches.count < 20_000,
                       let (location, patch) = dedup.bestPatch(for: page, number: number), let base = dedup.basePage(at: location) {
                        patches.append((base, patch, page))
                    }
                }
            }
        }
        var rebuilt = 0
        let rebuilding = try clock.measure {
            for entry in patches {
                guard try PagePatch.apply(entry.patch, to: entry.base) == entry.page else {
                    throw BenchError("a patch did not rebuild its page")
                }
                rebuilt += 1
            }
        }
        let totals = dedup.totals
        print("raw-bytes \(totals.rawBytes)")
        print("identical-only-bytes \(totals.identicalOnlyBytes)")
        print("with-patches-bytes \(totals.storedBytes)")
        print("patched-pages \(totals.patchedPages)")
        print("patch-bytes \(totals.patchBytes)")
        print("whole-pages \(totals.wholePages)")
        print("identical-pages \(totals.identicalPages)")
        print("plan-seconds \(String(format: "%.2f", seconds(planning)))")
        print("rebuild-us-per-page \(String(format: "%.2f", rebuilt == 0 ? 0 : seconds(rebuilding) * 1e6 / Double(rebuilt)))")
    }

    /// The file's 4 KiB pages, read in 8 MiB pieces (a RAM file is hundreds of MiB).
    static func pages(of path: String) throws -> AnySequence<[UInt8]> {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw BenchError("cannot read \(path)") }
        let size = SnapshotDeduplicator.pageSize
        return AnySequence(sequence(state: (handle, [UInt8](), 0)) { state -> [UInt8]? in
            if state.2 >= state.1.count {
                guard let data = try? state.0.read(upToCount: 8 << 20), !data.isEmpty else {
                    try? state.0.close()
                    return nil
                }
                state.1 = Array(data)
                state.2 = 0
            }
            let end = min(state.2 + size, state.1.count)
            var page = Array(state.1[state.2..<end])
            state.2 = end
            if page.count < size { page += [UInt8](repeating: 0, count: size - page.count) }
            return page
        })
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
