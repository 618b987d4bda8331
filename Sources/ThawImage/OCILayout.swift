/// An OCI image layout directory (OCI image-spec `image-layout.md`): `oci-layout`, `index.json`
/// and content-addressed `blobs/`.
struct OCILayout {
    let path: String

    init(path: String) throws {
        self.path = path
        let marker: [UInt8]
        do {
            marker = try FileSource.readAll(path: path + "/oci-layout", limit: 1 << 16)
        } catch {
            throw ImageError(.notFound, "\(path) is not an OCI image layout: it has no oci-layout file")
        }
        struct Marker: Decodable { var imageLayoutVersion: String }
        let version = try Image.decode(Marker.self, from: marker, what: "\(path)/oci-layout").imageLayoutVersion
        guard version.hasPrefix("1.") else {
            throw ImageError(.invalidImage, "\(path): unsupported image layout version \(version)")
        }
    }

    func blobPath(_ digest: Digest) -> String { path + "/blobs/sha256/" + digest.hex }

    /// Reads a small blob (index, manifest, config) and checks its size and digest.
    func readBlob(_ descriptor: Descriptor, what: String) throws -> [UInt8] {
        let bytes: [UInt8]
        do {
            bytes = try FileSource.readAll(path: blobPath(descriptor.digest))
        } catch {
            throw ImageError(.notFound, "\(what) blob \(descriptor.digest) is missing from \(path)")
        }
        guard bytes.count == descriptor.size else {
            throw ImageError(.sizeMismatch, "\(what) blob \(descriptor.digest) has \(bytes.count) bytes, its descriptor gives \(descriptor.size)")
        }
        let actual = Digest.of(bytes)
        guard actual == descriptor.digest else {
            throw ImageError(.digestMismatch, "\(what) blob \(descriptor.digest) hashes to \(actual)")
        }
        return bytes
    }

    func image(tag: String?, platform: Platform, reference: ImageReference) throws -> Image {
        let indexBytes: [UInt8]
        do {
            indexBytes = try FileSource.readAll(path: path + "/index.json")
        } catch {
            throw ImageError(.notFound, "\(path) is not an OCI image layout: it has no index.json")
        }
        let index = try Image.decode(ImageIndex.self, from: indexBytes, what: "\(path)/index.json")
        var candidates = index.manifests
        if let tag {
            candidates = candidates.filter { $0.referenceName == tag }
            guard !candidates.isEmpty else {
                let tags = index.manifests.compactMap(\.referenceName)
                throw ImageError(.notFound, "no image tagged '\(tag)' in \(path)" + (tags.isEmpty ? "" : " (tags: \(tags.joined(separator: ", ")))"))
            }
        }
        if candidates.count > 1 {
            let matching = candidates.filter { $0.platform.map(platform.accepts) ?? false }
            if matching.count == 1 {
                candidates = matching
            } else {
                let tags = Set(candidates.compactMap(\.referenceName)).sorted()
                throw ImageError(.ambiguous, "\(path) holds \(candidates.count) images; name one with oci:\(path):TAG" + (tags.isEmpty ? "" : " (tags: \(tags.joined(separator: ", ")))"))
            }
        }
        guard let descriptor = candidates.first else {
            throw ImageError(.notFound, "\(path)/index.json lists no images")
        }
        let manifestDescriptor = try resolve(descriptor, platform: platform, depth: 0)
        let manifest = try Image.decode(ImageManifest.self, from: try readBlob(manifestDescriptor, what: "manifest"), what: "manifest \(manifestDescriptor.digest)")
        let configBytes = try readBlob(manifest.config, what: "config")
        let configuration = try Image.decode(ImageConfiguration.self, from: configBytes, what: "config \(manifest.config.digest)")
        try Image.checkLayers(count: manifest.layers.count, configuration: configuration)
        var layers: [ImageLayer] = []
        for (i, descriptor) in manifest.layers.enumerated() {
            guard let compression = LayerCompression(mediaType: descriptor.mediaType) else {
                throw ImageError(.unsupportedMediaType, "media type '\(descriptor.mediaType)' is not a layer type Thaw reads",
                                 layer: "layer \(i + 1) (\(descriptor.digest))")
            }
            guard descriptor.size >= 0 else {
                throw ImageError(.invalidImage, "negative size", layer: "layer \(i + 1) (\(descriptor.digest))")
            }
            layers.append(ImageLayer(
                index: i, blobDigest: descriptor.digest, blobSize: descriptor.size,
                diffID: configuration.rootfs.diffIDs[i], compression: compression,
                path: blobPath(descriptor.digest), offset: 0, length: UInt64(descriptor.size) + 1))
            // length: one byte more than promised, so that an overlong blob is noticed.
        }
        return Image(reference: reference, configDigest: manifest.config.digest, configuration: configuration,
                     configBytes: configBytes, layers: layers)
    }

    /// Follows image indexes down to one manifest for `platform`.
    private func resolve(_ descriptor: Descriptor, platform: Platform, depth: Int) throws -> Descriptor {
        if MediaTypes.isManifest(descriptor.mediaType) { return descriptor }
        guard MediaTypes.isIndex(descriptor.mediaType) else {
            throw ImageError(.unsupportedMediaType, "\(descriptor.digest) has media type '\(descriptor.mediaType)', not an image manifest or index")
        }
        guard depth < 4 else { throw ImageError(.invalidImage, "image indexes nest deeper than 4 levels") }
        let nested = try Image.decode(ImageIndex.self, from: try readBlob(descriptor, what: "index"), what: "index \(descriptor.digest)")
        let matching = nested.manifests.filter { $0.platform.map(platform.accepts) ?? false }
        guard let chosen = matching.first else {
            let available = nested.manifests.compactMap { $0.platform?.description }
            throw ImageError(.noMatchingPlatform, "no manifest for \(platform) in index \(descriptor.digest)" + (available.isEmpty ? "" : " (available: \(available.joined(separator: ", ")))"))
        }
        return try resolve(chosen, platform: platform, depth: depth + 1)
    }
}
