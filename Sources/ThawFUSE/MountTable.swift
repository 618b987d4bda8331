#if canImport(Glibc)
import Glibc
#endif

/// The kernel's table of this process's mounts (`/proc/self/mountinfo`).
enum MountTable {
    /// The filesystem type of the topmost mount at `mountPoint` (an absolute path without
    /// symbolic links); nil when nothing is mounted there.
    static func fileSystemType(at mountPoint: String) -> String? {
        guard let table = fopen("/proc/self/mountinfo", "r") else { return nil }
        defer { fclose(table) }
        var line: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { free(line) }
        var found: String?
        while getline(&line, &capacity, table) >= 0, let line {
            // "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER"
            let fields = String(cString: line).split(separator: " ", omittingEmptySubsequences: false)
            guard fields.count > 4, unescape(fields[4]) == mountPoint,
                  let separator = fields.firstIndex(of: "-"), separator + 1 < fields.count else { continue }
            found = String(fields[separator + 1])  // later lines are mounted on top of earlier ones
        }
        return found
    }

    /// Undoes the table's octal escapes ("\040" for a space) of spaces, tabs, newlines and
    /// backslashes in paths.
    static func unescape(_ field: Substring) -> String {
        var bytes: [UInt8] = []
        var utf8 = Array(field.utf8)[...]
        while let byte = utf8.popFirst() {
            if byte == UInt8(ascii: "\\"), utf8.count >= 3,
               let value = UInt8(String(decoding: utf8.prefix(3), as: UTF8.self), radix: 8) {
                bytes.append(value)
                utf8 = utf8.dropFirst(3)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
