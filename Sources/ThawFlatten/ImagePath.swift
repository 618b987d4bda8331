/// The rules for paths inside an image: relative, no `..`, at most `PATH_MAX` bytes.
enum ImagePath {
    static let maximumLength = 4096

    /// Splits a tar member path into components; `[]` is the root.
    ///
    /// `./` prefixes, repeated slashes and `.` components are dropped; an absolute path or a
    /// `..` component is refused rather than reinterpreted, so nothing can point outside the image.
    static func components(_ path: [UInt8], what: String = "path") throws -> [[UInt8]] {
        guard path.count <= maximumLength else {
            throw FlattenError("\(what) is \(path.count) bytes long, more than \(maximumLength)")
        }
        guard path.first != UInt8(ascii: "/") else {
            throw FlattenError("\(what) is absolute; image paths must be relative to the root")
        }
        var parts: [[UInt8]] = []
        for part in path.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true) {
            if part.count == 1 && part.first == UInt8(ascii: ".") { continue }
            if part.count == 2 && part.allSatisfy({ $0 == UInt8(ascii: ".") }) {
                throw FlattenError("\(what) contains '..', which could point outside the image")
            }
            guard part.count <= 255 else {
                throw FlattenError("\(what) has a component of \(part.count) bytes; ext4 names are at most 255")
            }
            guard !part.contains(0) else { throw FlattenError("\(what) contains a NUL byte") }
            parts.append(Array(part))
        }
        return parts
    }
}
