/// Where an image comes from, in the transport syntax of skopeo and podman.
///
/// - `oci:PATH[:TAG]` — an OCI image layout directory, optionally naming a tag;
/// - `docker-archive:PATH[:NAME:TAG]` — a `docker save` archive, optionally naming a repo tag;
/// - a bare directory is an OCI layout, a bare `*.tar` a docker archive.
public enum ImageReference: Hashable, Sendable, CustomStringConvertible {
    case ociLayout(path: String, tag: String?)
    case dockerArchive(path: String, name: String?)

    public init(parsing text: String, isDirectory: (String) -> Bool) throws {
        if text.hasPrefix("oci:") {
            let (path, tag) = try Self.split(text, transport: "oci:", usage: "oci:PATH[:TAG]")
            self = .ociLayout(path: path, tag: tag)
        } else if text.hasPrefix("docker-archive:") {
            let (path, name) = try Self.split(text, transport: "docker-archive:", usage: "docker-archive:PATH[:NAME:TAG]")
            self = .dockerArchive(path: path, name: name)
        } else if let colon = text.firstIndex(of: ":"), !isDirectory(text),
                  text[..<colon].allSatisfy({ $0.isLetter || $0 == "-" }), text[..<colon].count > 1 {
            throw ImageError(.invalidReference,
                             "'\(text)': unknown transport '\(text[..<colon])' (use oci: or docker-archive:)")
        } else if isDirectory(text) {
            self = .ociLayout(path: text, tag: nil)
        } else if text.hasSuffix(".tar") {
            self = .dockerArchive(path: text, name: nil)
        } else {
            throw ImageError(.invalidReference,
                             "'\(text)' is neither a directory (OCI layout) nor a .tar file (docker archive); use oci:PATH[:TAG] or docker-archive:PATH")
        }
    }

    /// Splits `TRANSPORT:PATH[:REST]`; like skopeo, the path ends at its first colon.
    private static func split(_ text: String, transport: String, usage: String) throws -> (String, String?) {
        let rest = text.dropFirst(transport.count)
        guard let colon = rest.firstIndex(of: ":") else {
            guard !rest.isEmpty else { throw ImageError(.invalidReference, "'\(text)': expected \(usage)") }
            return (String(rest), nil)
        }
        let path = String(rest[..<colon])
        let suffix = String(rest[rest.index(after: colon)...])
        guard !path.isEmpty, !suffix.isEmpty else { throw ImageError(.invalidReference, "'\(text)': expected \(usage)") }
        return (path, suffix)
    }

    public var description: String {
        switch self {
        case .ociLayout(let path, let tag): return "oci:" + path + (tag.map { ":" + $0 } ?? "")
        case .dockerArchive(let path, let name): return "docker-archive:" + path + (name.map { ":" + $0 } ?? "")
        }
    }
}
