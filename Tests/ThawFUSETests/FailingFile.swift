import ThawFUSE

/// A FUSE file whose every read fails, as a file backed by an unreachable store would.
struct FailingFile: FUSEFile {
    struct Unreachable: Error {}

    var size: UInt64

    func read(offset: UInt64, length: Int) async throws -> [UInt8] {
        throw Unreachable()
    }
}
