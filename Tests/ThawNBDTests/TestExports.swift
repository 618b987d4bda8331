import Foundation
import ThawNBD

/// An export of bytes held in memory.
struct MemoryExport: NBDExport {
    let bytes: [UInt8]
    var exportDescription: String?

    var size: UInt64 { UInt64(bytes.count) }

    func read(offset: UInt64, length: Int) async throws -> [UInt8] {
        Array(bytes[Int(offset)..<(Int(offset) + length)])
    }
}

/// The error a `FailingExport` throws.
struct InjectedReadError: Error {}

/// An export whose reads fail when they touch `failing`, and succeed (zeroes) elsewhere.
struct FailingExport: NBDExport {
    let size: UInt64
    let failing: Range<UInt64>

    func read(offset: UInt64, length: Int) async throws -> [UInt8] {
        if offset < failing.upperBound && offset + UInt64(length) > failing.lowerBound { throw InjectedReadError() }
        return [UInt8](repeating: 0, count: length)
    }
}

/// Exports by name; the empty name is the default export, `defaultName`.
struct TestCatalog: NBDExportCatalog {
    let exports: [String: any NBDExport]
    var defaultName = "disk"

    func export(named name: String) async -> (any NBDExport)? {
        exports[name.isEmpty ? defaultName : name]
    }

    func exportNames() async -> [String] { exports.keys.sorted() }
}

/// The random image the tests serve: 40 MiB and an odd number of bytes more, so the last read
/// of every client is short and unaligned.
enum TestImage {
    static let size = 40 * 1024 * 1024 + 12_345

    static let bytes: [UInt8] = {
        let handle = FileHandle(forReadingAtPath: "/dev/urandom")!
        defer { try? handle.close() }
        return [UInt8](handle.readData(ofLength: size))
    }()

    /// The catalog most tests use: the image as "disk" (and the default), a small described
    /// export, and one whose reads fail past its first MiB.
    static let catalog = TestCatalog(exports: [
        "disk": MemoryExport(bytes: bytes),
        "small": MemoryExport(bytes: Array(bytes[0..<4096]), exportDescription: "a small test disk"),
        "failing": FailingExport(size: 8 << 20, failing: (1 << 20)..<(8 << 20)),
    ])

    /// Writes the image to `directory`/disk.img and returns the path.
    static func write(to directory: String) throws -> String {
        let path = directory + "/disk.img"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }
}
