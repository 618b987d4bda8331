/// Why a tar stream was refused, and at which entry.
public struct TarError: Error, Sendable, CustomStringConvertible, Equatable {
    /// The kind of defect; compare against the static members.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        /// The stream ended inside a header, an entry's data or its padding.
        public static let truncated = Code("truncated")
        /// A header's checksum does not match its bytes.
        public static let badChecksum = Code("bad header checksum")
        /// A numeric or text field could not be parsed.
        public static let invalidField = Code("invalid field")
        /// An entry type Thaw does not handle (sparse files, multi-volume archives, …).
        public static let unsupportedType = Code("unsupported entry type")
        /// A size beyond what Thaw accepts for that kind of record.
        public static let tooLarge = Code("too large")
        /// A pax extended header that is not a valid sequence of records.
        public static let invalidPax = Code("invalid pax header")
    }

    public let code: Code
    /// A human description of what was wrong.
    public let message: String
    /// The path of the entry being read, when known.
    public let entry: String?

    public init(_ code: Code, _ message: String, entry: String? = nil) {
        self.code = code
        self.message = message
        self.entry = entry
    }

    public var description: String {
        if let entry { return "tar entry '\(entry)': \(message)" }
        return "tar: \(message)"
    }
}
