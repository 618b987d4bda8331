/// Why an image could not be read: a bad reference, a missing or corrupt blob, a layer that
/// fails verification. Carries the layer and entry when the defect is inside one.
public struct ImageError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        public static let invalidReference = Code("invalid reference")
        public static let notFound = Code("not found")
        public static let invalidJSON = Code("invalid JSON")
        public static let digestMismatch = Code("digest mismatch")
        public static let sizeMismatch = Code("size mismatch")
        public static let unsupportedMediaType = Code("unsupported media type")
        public static let noMatchingPlatform = Code("no matching platform")
        public static let ambiguous = Code("ambiguous")
        public static let corruptCompression = Code("corrupt compressed data")
        public static let io = Code("I/O error")
        public static let invalidImage = Code("invalid image")
    }

    public let code: Code
    public let message: String
    /// Which layer, as "layer N (sha256:…)", when the defect is inside one.
    public var layer: String?

    public init(_ code: Code, _ message: String, layer: String? = nil) {
        self.code = code
        self.message = message
        self.layer = layer
    }

    public var description: String {
        if let layer { return "\(layer): \(message)" }
        return message
    }
}
