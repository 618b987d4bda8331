/// An initramfs: a cpio archive in the "newc" format the kernel unpacks into its first root.
///
/// Hand-written: the format is 110 bytes of ASCII hex per entry (see the kernel's
/// Documentation/driver-api/early-userspace/buffer-format.rst); no package writes it.
struct CPIOArchive {
    enum Kind {
        case directory
        case file([UInt8])
        case symlink(String)
        case characterDevice(major: UInt32, minor: UInt32)
    }

    private(set) var bytes: [UInt8] = []
    private var nextInode: UInt32 = 1

    mutating func add(_ path: String, _ kind: Kind, mode: UInt32 = 0o755) {
        let data: [UInt8]
        var fileMode: UInt32
        var rdevMajor: UInt32 = 0, rdevMinor: UInt32 = 0
        switch kind {
        case .directory: (data, fileMode) = ([], 0o040000)
        case .file(let contents): (data, fileMode) = (contents, 0o100000)
        case .symlink(let target): (data, fileMode) = (Array(target.utf8), 0o120000)
        case .characterDevice(let major, let minor):
            (data, fileMode) = ([], 0o020000)
            (rdevMajor, rdevMinor) = (major, minor)
        }
        fileMode |= mode & 0o7777
        let name = Array(path.utf8) + [0]
        let fields: [UInt32] = [nextInode, fileMode, 0, 0, 1, 0, UInt32(data.count), 0, 0, rdevMajor, rdevMinor,
                                UInt32(name.count), 0]
        nextInode += 1
        bytes += Array("070701".utf8)
        for field in fields { bytes += Array(hex8(field).utf8) }
        bytes += name
        pad()
        bytes += data
        pad()
    }

    /// The archive with its trailer.
    mutating func finish() -> [UInt8] {
        add("TRAILER!!!", .file([]), mode: 0)
        bytes += [UInt8](repeating: 0, count: (512 - bytes.count % 512) % 512)
        return bytes
    }

    private mutating func pad() {
        bytes += [UInt8](repeating: 0, count: (4 - bytes.count % 4) % 4)
    }

    private func hex8(_ value: UInt32) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return String(repeating: "0", count: 8 - digits.count) + digits
    }
}
