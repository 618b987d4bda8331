/// An OS/architecture pair, as in an image index: `linux/amd64`, `linux/arm64/v8`.
public struct Platform: Hashable, Sendable, CustomStringConvertible, Codable {
    public var os: String
    public var architecture: String
    public var variant: String?

    /// The platform Thaw runs functions on unless told otherwise.
    public static let linuxAMD64 = Platform(os: "linux", architecture: "amd64")

    public init(os: String, architecture: String, variant: String? = nil) {
        self.os = os
        self.architecture = architecture
        self.variant = variant
    }

    /// Parses `os/arch[/variant]`.
    public init(parsing text: String) throws {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard (2...3).contains(parts.count), parts.allSatisfy({ !$0.isEmpty }) else {
            throw ImageError(.invalidReference, "platform '\(text)' is not os/arch[/variant]")
        }
        self.init(os: parts[0], architecture: parts[1], variant: parts.count == 3 ? parts[2] : nil)
    }

    public var description: String {
        [os, architecture, variant].compactMap { $0 }.joined(separator: "/")
    }

    /// True when `other` (from an index) satisfies this request; a request without variant
    /// accepts any variant.
    public func accepts(_ other: Platform) -> Bool {
        os == other.os && architecture == other.architecture && (variant == nil || variant == other.variant)
    }

    enum CodingKeys: String, CodingKey {
        case os
        case architecture
        case variant
    }
}
