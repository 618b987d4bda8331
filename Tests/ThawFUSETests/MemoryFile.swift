import ThawFUSE

/// A FUSE file held in memory. It refuses reads that reach past its end, which the mount
/// promises never to ask for, so a broken promise shows up as a failed read.
final class MemoryFile: FUSEFile {
    struct AskedPastEnd: Error {}

    let bytes: [UInt8]

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    var size: UInt64 { UInt64(bytes.count) }

    func read(offset: UInt64, length: Int) async throws -> [UInt8] {
        let start = Int(offset)
        guard length >= 0, start + length <= bytes.count else { throw AskedPastEnd() }
        return Array(bytes[start..<start + length])
    }
}
