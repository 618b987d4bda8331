import Foundation
import ThawSandbox
import ThawSandboxCore
import ThawServe

/// Where the time of one `thaw run` went and what it fetched, for its closing report.
struct StartBreakdown {
    /// `MonotonicTime` marks; nil for a step that did not happen.
    var began: UInt64
    var pushed: UInt64?
    var agentReady: UInt64?
    var manifestFetched: UInt64?
    var deviceReady: UInt64?
    var rootMounted: UInt64?
    var handlerStarted: UInt64?
    var finished: UInt64?

    var manifestID = ""
    var imageSize: UInt64 = 0
    var chunkSize: UInt64 = 0
    var reads = LazyImageStatistics()
    /// Chunks the prefetch record listed, when there was one.
    var prefetchChunks: Int?
    /// Chunks this start's recording saved, when it was recorded.
    var recordedChunks: Int?
    /// The start ran an image laid out as pushed that has a record of blocks, not a snapshot's
    /// restore: `thaw run` may lay it out again (not printed).
    var mayBeLaidOutAgain = false
    /// Recorded ranges and bytes loaded into the image file's page cache ahead of the handler.
    var pageCacheWarmed: (ranges: Int, bytes: UInt64)?
    /// What the sandbox's init loaded into the mounted image's caches, as it reported it.
    var sandboxPreload: String?
    /// When a restored microVM resumed (restores only).
    var restored: UInt64?
    /// How a restore read its memory snapshot (restores only).
    var memory: Memory?

    /// The memory side of a restore: the RAM file served lazily, like an image.
    struct Memory {
        var manifestID: String
        var size: UInt64
        var reads: LazyImageStatistics
        var prefetchChunks: Int?
        var recordedChunks: Int?
    }

    init(began: UInt64) { self.began = began }

    /// The steps after the push, each measured from the start of serving.
    var steps: [(name: String, seconds: Double?)] {
        let origin = agentReady ?? began
        func since(_ mark: UInt64?) -> Double? { mark.map { MonotonicTime.seconds(from: origin, to: $0) } }
        if restored != nil || memory != nil {
            return [
                ("manifest fetched", since(manifestFetched)),
                ("device ready", since(deviceReady)),
                ("snapshot restored", since(restored)),
                ("response received", since(finished)),
            ]
        }
        return [
            ("manifest fetched", since(manifestFetched)),
            ("device ready", since(deviceReady)),
            ("root mounted", since(rootMounted)),
            ("handler started", since(handlerStarted)),
            ("response received", since(finished)),
        ]
    }

    var fetchedFraction: Double { imageSize == 0 ? 0 : Double(reads.bytesFromOrigin) / Double(imageSize) }

    func text() -> String {
        var lines: [String] = []
        if let pushed { lines.append(String(format: "pushed in %.2f s", MonotonicTime.seconds(from: began, to: pushed))) }
        lines.append("start of \(manifestID.prefix(16)) (\(mib(imageSize))):")
        for step in steps {
            let name = step.name.padding(toLength: 18, withPad: " ", startingAt: 0)
            lines.append("  \(name) " + (step.seconds.map { String(format: "%7.3f s", $0) } ?? "      –"))
        }
        let r = reads
        lines.append(String(format: "  origin: %d chunks, %@ (%.1f%% of the image); %d by prefetch, %d by read-ahead",
                            r.originFetches, mib(r.bytesFromOrigin), fetchedFraction * 100, r.prefetchFetches, r.readAheadFetches))
        if r.l2Hits + r.l2Misses > 0 {
            lines.append("  L2: \(r.l2Hits) chunks, \(mib(r.bytesFromL2)) (\(r.chunksFromL2) chunk pieces waited for it); \(r.l2Misses) misses went to the origin")
        }
        lines.append("  L1: \(r.chunksFromL1 - r.chunksFromDisk) chunk pieces from memory, \(r.chunksFromDisk) from disk; zero: \(r.chunksFromZero) pieces")
        lines.append("  reads: \(r.reads) (\(mib(r.bytesRead)))")
        if let prefetchChunks, r.prefetchFetches + r.prefetchHits > 0 {
            lines.append("  prefetch: \(prefetchChunks) recorded chunks, \(r.prefetchHits) prefetch hits")
        } else if let recordedChunks {
            lines.append("  recorded: \(recordedChunks) chunks, prefetched from the next start on")
        }
        if let warmed = pageCacheWarmed {
            lines.append("  page cache: \(warmed.ranges) recorded ranges, \(mib(warmed.bytes)), loaded ahead of the handler's reads")
        }
        if let sandboxPreload { lines.append("  sandbox: \(sandboxPreload) in the mounted image") }
        if let memory {
            let m = memory.reads
            lines.append(String(format: "  memory %@ (%@): %d reads through FUSE (faults and page-cache loads), %@; origin %d chunks, %@; L1 %d chunk pieces",
                                String(memory.manifestID.prefix(16)), mib(memory.size), m.reads, mib(m.bytesRead), m.originFetches,
                                mib(m.bytesFromOrigin), m.chunksFromL1)
                         + (m.chunksRebuilt > 0 ? "; \(m.chunksRebuilt) rebuilt from deltas against the base" : ""))
            if let prefetch = memory.prefetchChunks {
                lines.append("  memory prefetch: \(prefetch) recorded chunks, \(m.prefetchHits) prefetch hits, \(m.recordedChunksRead) recorded chunks read, \(m.fetchesOutsideRecord) fetched outside the record")
            } else if let recorded = memory.recordedChunks {
                lines.append("  memory recorded: \(recorded) chunks, prefetched from the next restore on")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    func json() -> String {
        var object: [String: Any] = [
            "manifest": manifestID, "imageBytes": imageSize, "bytesFromOrigin": reads.bytesFromOrigin,
            "originFetches": reads.originFetches, "prefetchFetches": reads.prefetchFetches, "prefetchHits": reads.prefetchHits,
            "readAheadFetches": reads.readAheadFetches, "chunkPiecesFromL1": reads.chunksFromL1,
            "chunkPiecesFromDisk": reads.chunksFromDisk, "chunkPiecesFromZero": reads.chunksFromZero,
            "reads": reads.reads, "bytesRead": reads.bytesRead,
            "l2Hits": reads.l2Hits, "l2Misses": reads.l2Misses, "bytesFromL2": reads.bytesFromL2,
            "chunkPiecesFromL2": reads.chunksFromL2, "chunkPiecesFromOrigin": reads.chunksFromOrigin,
        ]
        if let pushed { object["pushSeconds"] = MonotonicTime.seconds(from: began, to: pushed) }
        for step in steps {
            if let seconds = step.seconds { object[step.name.replacingOccurrences(of: " ", with: "_")] = seconds }
        }
        if let prefetchChunks { object["prefetchChunks"] = prefetchChunks }
        if let recordedChunks { object["recordedChunks"] = recordedChunks }
        if let warmed = pageCacheWarmed {
            object["pageCacheWarmedRanges"] = warmed.ranges
            object["pageCacheWarmedBytes"] = warmed.bytes
        }
        if let sandboxPreload { object["sandboxPreload"] = sandboxPreload }
        if let memory {
            var entry: [String: Any] = [
                "manifest": memory.manifestID, "bytes": memory.size, "reads": memory.reads.reads, "bytesRead": memory.reads.bytesRead,
                "originFetches": memory.reads.originFetches, "bytesFromOrigin": memory.reads.bytesFromOrigin,
                "prefetchFetches": memory.reads.prefetchFetches, "prefetchHits": memory.reads.prefetchHits,
                "recordedChunksRead": memory.reads.recordedChunksRead, "fetchesOutsideRecord": memory.reads.fetchesOutsideRecord,
                "chunkPiecesFromL1": memory.reads.chunksFromL1, "chunksRebuilt": memory.reads.chunksRebuilt,
            ]
            if let prefetch = memory.prefetchChunks { entry["prefetchChunks"] = prefetch }
            if let recorded = memory.recordedChunks { entry["recordedChunks"] = recorded }
            object["memory"] = entry
        }
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
        return String(decoding: data, as: UTF8.self) + "\n"
    }
}
