import Foundation
public import ThawImage

/// Writes an OCI image layout directory: blobs by digest, `oci-layout`, and `index.json` tags.
///
/// It also adds images to an existing layout that others read (the test corpus): every file is
/// written to a temporary file and renamed into place, so a reader never sees half a blob or
/// half an index, and a blob already present is left alone.
public struct OCILayoutWriter {
    public let directory: String

    public init(directory: String) throws {
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory + "/blobs/sha256", withIntermediateDirectories: true)
        if !FileManager.default.fileExists(atPath: directory + "/oci-layout") {
            try Data(#"{"imageLayoutVersion":"1.0.0"}"#.utf8).write(to: URL(fileURLWithPath: directory + "/oci-layout"), options: .atomic)
        }
    }

    /// Stores a blob under its digest and returns its descriptor. A blob of that digest and size
    /// already in the layout is the same content and is not written again.
    public mutating func addBlob(_ bytes: [UInt8], mediaType: String) throws -> Descriptor {
        let digest = Digest.of(bytes)
        let path = directory + "/blobs/sha256/" + digest.hex
        let present = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) == bytes.count
        if !present {
            try Data(bytes).write(to: URL(fileURLWithPath: path), options: .atomic)
        }
        return Descriptor(mediaType: mediaType, digest: digest, size: Int64(bytes.count))
    }

    /// Adds (or replaces, by tag) a manifest in `index.json`.
    public mutating func tag(_ manifest: Descriptor) throws {
        let path = directory + "/index.json"
        var index = ImageIndex(manifests: [])
        if let existing = FileManager.default.contents(atPath: path) {
            index = try JSONDecoder().decode(ImageIndex.self, from: existing)
        }
        index.manifests.removeAll { $0.referenceName != nil && $0.referenceName == manifest.referenceName }
        index.manifests.append(manifest)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try encoder.encode(index).write(to: URL(fileURLWithPath: path), options: .atomic)
    }
}
