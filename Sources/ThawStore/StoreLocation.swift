/// Where a store is, as a user writes it: `file:///path` or a plain path (a directory store),
/// or `s3://bucket[/prefix]` (an S3-compatible store).
public enum StoreLocation: Sendable, Equatable, CustomStringConvertible {
    case directory(String)
    case s3(bucket: String, prefix: String)

    public init(parsing text: String) throws {
        if text.hasPrefix("s3://") {
            let rest = text.dropFirst(5)
            let bucket = String(rest.prefix(while: { $0 != "/" }))
            var prefix = String(rest.dropFirst(bucket.count))
            while prefix.hasPrefix("/") { prefix.removeFirst() }
            while prefix.hasSuffix("/") { prefix.removeLast() }
            guard S3Bucket.isValid(bucket) else {
                throw StoreError(.invalidLocation, "'\(bucket)' in \(text) is not a valid S3 bucket name (3–63 of a-z, 0-9, '.', '-')")
            }
            if !prefix.isEmpty { _ = try StoreKey(prefix) }
            self = .s3(bucket: bucket, prefix: prefix)
        } else if text.hasPrefix("file://") {
            let path = String(text.dropFirst(7))
            guard path.hasPrefix("/") else {
                throw StoreError(.invalidLocation, "\(text) must be file:///ABSOLUTE/PATH")
            }
            self = .directory(path)
        } else if text.contains("://") {
            throw StoreError(.invalidLocation, "unknown store scheme in \(text); use file:///PATH, a path, or s3://BUCKET/PREFIX")
        } else {
            guard !text.isEmpty else { throw StoreError(.invalidLocation, "the store location is empty") }
            self = .directory(text)
        }
    }

    public var description: String {
        switch self {
        case .directory(let path): path
        case .s3(let bucket, let prefix): prefix.isEmpty ? "s3://\(bucket)" : "s3://\(bucket)/\(prefix)"
        }
    }
}

enum S3Bucket {
    /// The S3 bucket naming rules that matter for addressing: 3–63 characters of lowercase
    /// letters, digits, dots and hyphens, starting and ending with a letter or digit.
    static func isValid(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard bytes.count >= 3, bytes.count <= 63 else { return false }
        func alnum(_ c: UInt8) -> Bool { (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) }
        return alnum(bytes.first!) && alnum(bytes.last!) && bytes.allSatisfy { alnum($0) || $0 == 0x2e || $0 == 0x2d }
    }
}
