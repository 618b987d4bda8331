import ThawTar

/// A `docker save` archive: an uncompressed tar holding `manifest.json`, the config and one
/// tar per layer. Members are indexed once and then read in place with `pread`.
struct DockerArchive {
    struct Member {
        var offset: UInt64
        var size: UInt64
        var kind: TarEntry.Kind
        var linkName: String
    }

    let path: String
    private var members: [String: Member] = [:]

    init(path: String) throws {
        self.path = path
        let reader = TarReader(source: try FileSource(path: path))
        do {
            while let entry = try reader.nextEntry() {
                let name = Self.normalize(entry.displayPath)
                members[name] = Member(offset: reader.offset, size: entry.size, kind: entry.kind,
                                       linkName: String(decoding: entry.linkName, as: UTF8.self))
            }
        } catch let error as TarError {
            throw ImageError(.invalidImage, "\(path) is not a readable docker archive: \(error)")
        }
    }

    private static func normalize(_ name: String) -> String {
        var name = Substring(name)
        while name.hasPrefix("./") { name = name.dropFirst(2) }
        while name.hasPrefix("/") { name = name.dropFirst() }
        return String(name)
    }

    /// Finds a member, following symbolic and hard links inside the archive.
    private func member(_ name: String, what: String) throws -> (name: String, member: Member) {
        var current = Self.normalize(name)
        for _ in 0..<8 {
            guard let found = members[current] else {
                throw ImageError(.notFound, "\(what) '\(name)' is missing from \(path)")
            }
            switch found.kind {
            case .regular:
                return (current, found)
            case .symbolicLink:
                let base = current.split(separator: "/").dropLast().joined(separator: "/")
                current = Self.normalize(found.linkName.hasPrefix("/") ? found.linkName : (base.isEmpty ? "" : base + "/") + found.linkName)
                current = Self.collapse(current)
            case .hardLink:
                current = Self.normalize(found.linkName)
            default:
                throw ImageError(.invalidImage, "\(what) '\(name)' in \(path) is not a file")
            }
        }
        throw ImageError(.invalidImage, "\(what) '\(name)' in \(path): too many links")
    }

    private static func collapse(_ path: String) -> String {
        var parts: [Substring] = []
        for part in path.split(separator: "/") {
            if part == "." { continue }
            if part == ".." { _ = parts.popLast(); continue }
            parts.append(part)
        }
        return parts.joined(separator: "/")
    }

    private func read(_ name: String, what: String) throws -> [UInt8] {
        let (_, found) = try member(name, what: what)
        guard found.size <= 16 << 20 else { throw ImageError(.invalidImage, "\(what) '\(name)' is too large") }
        let source = try FileSource(path: path, offset: found.offset, length: found.size)
        var bytes = [UInt8](repeating: 0, count: Int(found.size))
        let n = try bytes.withUnsafeMutableBytes { try source.readFully(into: $0) }
        guard n == Int(found.size) else { throw ImageError(.invalidImage, "\(what) '\(name)' is truncated in \(path)") }
        return bytes
    }

    /// The digest a member's name promises: `blobs/sha256/HEX` or `HEX.json`.
    private static func digestInName(_ name: String) -> Digest? {
        let last = name.split(separator: "/").last.map(String.init) ?? name
        let hex = last.hasSuffix(".json") ? String(last.dropLast(5)) : last
        return try? Digest(parsing: "sha256:" + hex)
    }

    func image(name: String?, reference: ImageReference) throws -> Image {
        let entries = try Image.decode([DockerArchiveManifestEntry].self, from: try read("manifest.json", what: "manifest"),
                                       what: "\(path) manifest.json")
        let entry: DockerArchiveManifestEntry
        if let name {
            let wanted = name.contains(":") ? name : name + ":latest"
            guard let found = entries.first(where: { ($0.repoTags ?? []).contains(wanted) || ($0.repoTags ?? []).contains(name) }) else {
                let tags = entries.flatMap { $0.repoTags ?? [] }
                throw ImageError(.notFound, "no image named '\(name)' in \(path) (names: \(tags.joined(separator: ", ")))")
            }
            entry = found
        } else {
            guard entries.count == 1, let only = entries.first else {
                let tags = entries.flatMap { $0.repoTags ?? [] }
                throw ImageError(entries.isEmpty ? .notFound : .ambiguous,
                                 entries.isEmpty ? "\(path) holds no images"
                                     : "\(path) holds \(entries.count) images; name one with docker-archive:\(path):NAME:TAG (names: \(tags.joined(separator: ", ")))")
            }
            entry = only
        }

        let configBytes = try read(entry.config, what: "config")
        let configDigest = Digest.of(configBytes)
        if let promised = Self.digestInName(entry.config), promised != configDigest {
            throw ImageError(.digestMismatch, "config '\(entry.config)' hashes to \(configDigest)")
        }
        let configuration = try Image.decode(ImageConfiguration.self, from: configBytes, what: "config \(entry.config)")
        try Image.checkLayers(count: entry.layers.count, configuration: configuration)

        var layers: [ImageLayer] = []
        for (i, layerName) in entry.layers.enumerated() {
            let (resolved, found) = try member(layerName, what: "layer \(i + 1)")
            let head = try FileSource(path: path, offset: found.offset, length: min(found.size, 4))
            var magic = [UInt8](repeating: 0, count: 4)
            let n = try magic.withUnsafeMutableBytes { try head.readFully(into: $0) }
            let compression = LayerCompression(sniffing: Array(magic[0..<n]))
            // A blob named by digest is checked against that name too.
            let named = Self.digestInName(resolved)
            layers.append(ImageLayer(
                index: i,
                blobDigest: compression == .none ? nil : named,
                blobSize: Int64(found.size),
                diffID: configuration.rootfs.diffIDs[i],
                compression: compression,
                path: path, offset: found.offset, length: found.size))
        }
        return Image(reference: reference, configDigest: configDigest, configuration: configuration,
                     configBytes: configBytes, layers: layers)
    }
}
