import Glibc
import ThawSeal

extension DiskTier {
    /// Rebuilds a tier's index from its directory, removing what cannot be a complete chunk.
    ///
    /// In each two-hex-digit folder: temporary files are removed (a writer died before its
    /// rename); files that are not named by a chunk name beginning with the folder's digits,
    /// or whose size is zero or above `maximumChunkBytes`, are removed. The rest are admitted
    /// oldest modification first, so the policy starts close to the order they were written in,
    /// and evicted as needed to fit `capacity`. Their contents are checked when they are read,
    /// not here: opening a large cache must not read all of it.
    static func scan(_ directory: String, capacity: Int, maximumChunkBytes: Int,
                     into policy: inout ChunkPolicy) throws -> DiskScanReport {
        try ChunkFiles.makeDirectories(directory)
        var report = DiskScanReport()
        var found: [(modified: timespec, name: ChunkName, size: Int)] = []
        for folder in try ChunkFiles.entries(of: directory) where folder.isDirectory && isFanOutFolder(folder.name) {
            let folderPath = directory + "/" + folder.name
            for file in try ChunkFiles.entries(of: folderPath) where !file.isDirectory {
                let path = folderPath + "/" + file.name
                if file.name.contains(ChunkFiles.temporaryMarker) {
                    ChunkFiles.remove(path)
                    report.temporaryFilesRemoved += 1
                    continue
                }
                guard file.isRegularFile, file.size > 0, file.size <= maximumChunkBytes,
                      let name = try? ChunkName(hex: file.name), name.hex == file.name, file.name.hasPrefix(folder.name)
                else {
                    ChunkFiles.remove(path)
                    report.invalidFilesRemoved += 1
                    continue
                }
                found.append((file.modified, name, file.size))
            }
        }
        found.sort { a, b in
            if a.modified.tv_sec != b.modified.tv_sec { return a.modified.tv_sec < b.modified.tv_sec }
            if a.modified.tv_nsec != b.modified.tv_nsec { return a.modified.tv_nsec < b.modified.tv_nsec }
            return a.name < b.name
        }
        for file in found {
            guard file.size <= capacity else {
                ChunkFiles.remove(path(of: file.name, in: directory))
                report.evictedToFit += 1
                continue
            }
            while policy.bytes + file.size > capacity, let victim = policy.evict() {
                ChunkFiles.remove(path(of: victim.key.name, in: directory))
                report.evictedToFit += 1
            }
            policy.insert(CacheKey(file.name), size: file.size)
        }
        report.files = policy.count
        report.bytes = policy.bytes
        return report
    }

    /// Two lowercase hexadecimal digits: the only folders the tier owns.
    private static func isFanOutFolder(_ name: String) -> Bool {
        name.utf8.count == 2 && name.utf8.allSatisfy { c in
            (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "f"))
        }
    }
}
