import Foundation

/// An image ready to be read: its configuration and its layers, bottom first.
///
/// Opening an image reads and verifies the small JSON documents (index, manifest, config);
/// layers are verified as they are streamed through ``openLayer(_:)``.
public struct Image: Sendable {
    public var reference: ImageReference
    /// The digest of the image config: the image's identity, the same in every transport.
    public var configDigest: Digest
    public var configuration: ImageConfiguration
    /// The config blob exactly as the image holds it; its SHA-256 is `configDigest` (checked
    /// when the image is opened). Kept whole so that a push can store it next to the manifest
    /// and a runner can read it back with the same digest, fields Thaw does not decode included.
    public var configBytes: [UInt8]
    public var layers: [ImageLayer]

    /// Opens the image a reference names.
    ///
    /// - Parameter platform: which manifest to pick from a multi-platform index.
    /// - Throws: `ImageError` naming what is missing, malformed or does not verify.
    public static func open(_ reference: ImageReference, platform: Platform = .linuxAMD64) throws -> Image {
        switch reference {
        case .ociLayout(let path, let tag):
            return try OCILayout(path: path).image(tag: tag, platform: platform, reference: reference)
        case .dockerArchive(let path, let name):
            return try DockerArchive(path: path).image(name: name, reference: reference)
        }
    }

    /// Starts streaming one layer's uncompressed tar.
    public func openLayer(_ layer: ImageLayer) throws -> LayerStream {
        try LayerStream(layer)
    }

    static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8], what: String) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(bytes))
        } catch let error as ImageError {
            throw error
        } catch {
            throw ImageError(.invalidJSON, "\(what) is not valid: \(Self.describe(error))")
        }
    }

    static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, let context):
            return "missing '\(key.stringValue)'" + Self.path(context)
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            return context.debugDescription + Self.path(context)
        case DecodingError.dataCorrupted(let context):
            return context.debugDescription + Self.path(context)
        default:
            return "\(error)"
        }
    }

    private static func path(_ context: DecodingError.Context) -> String {
        let path = context.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
        return path.isEmpty ? "" : " at \(path)"
    }

    /// Checks the config against the manifest's layers and builds the layer list.
    static func checkLayers(count: Int, configuration: ImageConfiguration) throws {
        guard configuration.rootfs.diffIDs.count == count else {
            throw ImageError(.invalidImage,
                             "the config lists \(configuration.rootfs.diffIDs.count) diff IDs for \(count) layers")
        }
    }
}
