/// Why an image could not be flattened, naming the layer and the entry at fault.
public struct FlattenError: Error, Sendable, CustomStringConvertible {
    public let message: String
    /// "layer 2 (sha256:…)", when the defect is inside a layer.
    public var layer: String?
    /// The tar entry's path, when one entry is at fault.
    public var entry: String?

    public init(_ message: String, layer: String? = nil, entry: String? = nil) {
        self.message = message
        self.layer = layer
        self.entry = entry
    }

    public var description: String {
        var parts: [String] = []
        if let layer { parts.append(layer) }
        if let entry { parts.append("entry '\(entry)'") }
        parts.append(message)
        return parts.joined(separator: ": ")
    }
}
