import Foundation

/// What a sandbox loads into the page caches of its mounted image before the handler asks, in
/// the order a recorded start first read it (`ImagePreloader` does the loading).
///
/// Why: the loop device reads the image file through its own cache, and ext4 keeps what it read
/// in caches of its own, which start empty at every mount: each of the handler's reads that
/// misses them is a request to the loop device, 16 KiB at a time, one after the other. Loading
/// the recorded blocks into those caches from a thread of the sandbox's init, in large requests
/// queued at once, lets the handler's reads find them there.
///
/// A run names blocks of the image, and, when the image's hot region says so, which file
/// content they are: ext4 keeps a file's content in the file's own cache, so content must be
/// loaded through the file (`inode` from `logical`), and everything else (inode tables,
/// directories, extent trees) through the device.
public struct PreloadRun: Sendable, Equatable {
    /// The run's first 4 KiB block in the image, and its length in blocks.
    public var block: UInt64
    public var count: UInt32
    /// The inode whose content the blocks are, from its logical block `logical`; nil when they
    /// are not known to be file content.
    public var inode: UInt32?
    public var logical: UInt32?

    public init(block: UInt64, count: UInt32, inode: UInt32? = nil, logical: UInt32? = nil) {
        self.block = block
        self.count = count
        self.inode = inode
        self.logical = logical
    }
}

/// Runs as a sandbox's plan carries them: one base64 string of 20 bytes per run (block u64,
/// count u32, inode u32 with 0 for none, logical block u32, little-endian).
///
/// Why not a JSON object per run: a record has hundreds to thousands of runs, and Foundation's
/// JSON coders spent milliseconds on them, on both sides of the pipe, while a start waited.
public struct PreloadRuns: Codable, Sendable, Equatable {
    public var runs: [PreloadRun]

    public init(_ runs: [PreloadRun]) { self.runs = runs }

    static let recordSize = 20

    public func encode(to encoder: any Encoder) throws {
        var bytes = [UInt8]()
        bytes.reserveCapacity(runs.count * Self.recordSize)
        func append<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }
        for run in runs {
            append(run.block)
            append(run.count)
            append(run.inode ?? 0)
            append(run.logical ?? 0)
        }
        var container = encoder.singleValueContainer()
        try container.encode(Data(bytes).base64EncodedString())
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let data = Data(base64Encoded: text), data.count % Self.recordSize == 0 else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "preload runs are not base64 of \(Self.recordSize)-byte records")
        }
        let bytes = [UInt8](data)
        func read<T: FixedWidthInteger>(_ type: T.Type, at offset: Int) -> T {
            var value: T = 0
            withUnsafeMutableBytes(of: &value) { $0.copyBytes(from: bytes[offset..<(offset + MemoryLayout<T>.size)]) }
            return T(littleEndian: value)
        }
        runs = stride(from: 0, to: bytes.count, by: Self.recordSize).map { offset in
            let inode = read(UInt32.self, at: offset + 12)
            return PreloadRun(block: read(UInt64.self, at: offset), count: read(UInt32.self, at: offset + 8),
                              inode: inode == 0 ? nil : inode, logical: inode == 0 ? nil : read(UInt32.self, at: offset + 16))
        }
    }
}

public enum ImagePreload {
    /// The runs to preload for a start of an image whose recorded start read `recorded` (runs
    /// of blocks, first read first), given its hot region: `hotBlocks[k]` is the inode and
    /// logical block that block `hotStart + k` holds (a relaid image's manifest lists them).
    ///
    /// Blocks of the hot region become file runs, joined while they follow on in the same file
    /// and on the device; every other block becomes a device run. Order is kept: a run is only
    /// ever joined to the one just before it.
    public static func runs(recorded: [(first: UInt64, count: UInt64)], hotStart: UInt64,
                            hotBlocks: [(inode: UInt32, logical: UInt32)]) -> [PreloadRun] {
        var runs: [PreloadRun] = []
        let hotEnd = hotStart + UInt64(hotBlocks.count)
        for run in recorded {
            for block in run.first..<(run.first + run.count) {
                var inode: UInt32?
                var logical: UInt32?
                if block >= hotStart && block < hotEnd {
                    let content = hotBlocks[Int(block - hotStart)]
                    (inode, logical) = (content.inode, content.logical)
                }
                if var last = runs.last, last.block + UInt64(last.count) == block, last.inode == inode,
                   inode == nil || last.logical.map({ UInt64($0) + UInt64(last.count) }) == logical.map(UInt64.init) {
                    last.count += 1
                    runs[runs.count - 1] = last
                } else {
                    runs.append(PreloadRun(block: block, count: 1, inode: inode, logical: logical))
                }
            }
        }
        return runs
    }
}
