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
            let rest = String(text.dropFirst(4))
            // Like skopeo: the path ends at the first colon.
            if let colon = rest.firstIndex(of: ":") {
                let path = String(rest[..<colon])
                let tag = String(rest[rest.index(after: colon)...])
                guard !path.isEmpty, !tag.isEmpty else {
                    throw ImageError(.invalidReference, "'\(text)': expected oci:PATH[:TAG]")
                }
                self = .ociLayout(path: path, tag: tag)
            } else {
                guard !rest.isEmpty else { throw ImageError(.invalidReference, "'\(text)': expected oci:PATH[:TAG]") }
                self = .ociLayout(path: rest, tag: nil)
            }
        } else if text.hasPrefix("docker-archive:") {
            let rest = String(text.dropFirst("docker-archive:".count))
            if let colon = rest.firstIndex(of: ":") {
                let path = String(rest[..<colon])
                let name = String(rest[rest.index(after: colon)...])
                guard !path.isEmpty, !name.isEmpty else {
                    throw ImageError(.invalidReference, "'\(text)': expected docker-archive:PATH[:NAME:TAG]")
                }
                self = .dockerArchive(path: path, name: name)
            } else {
                guard !rest.isEmpty else { throw ImageError(.invalidReference, "'\(text)': expected docker-archive:PATH") }
                self = .dockerArchive(path: rest, name: nil)
            }
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

    public var description: String {
        switch self {
        case .ociLayout(let path, let tag): return "oci:" + path + (tag.map { ":" + $0 } ?? "")
        case .dockerArchive(let path, let name): return "docker-archive:" + path + (name.map { ":" + $0 } ?? "")
        }
    }
}
