/// A parsed `~/.aws/config` or `~/.aws/credentials`.
///
/// The two files name their sections differently: the config file writes `[default]` and
/// `[profile NAME]` (and ignores any other bare `[NAME]`), the credentials file writes `[NAME]`.
/// The config file may also hold `[services NAME]` sections with per-service settings.
public struct AWSProfileFile: Sendable, Hashable {
    public enum Kind: Sendable, Hashable {
        case config
        case credentials
    }

    public var kind: Kind
    /// The path the text was read from; it appears in every error and setting location.
    public var path: String
    public var profiles: [String: AWSProfile]
    /// `[services NAME]` sections, from a config file only.
    public var services: [String: AWSProfile]

    /// Parses the file's text.
    ///
    /// Whole-line comments start with `#` or `;`; after a value, `#` or `;` starts a comment only
    /// when whitespace precedes it, so values such as secrets may contain either character.
    /// An indented line continues the setting above it, or nests under it when that setting's
    /// value is empty. Repeated sections merge and a repeated setting keeps its last value.
    public init(parsing text: String, kind: Kind, path: String) throws(AWSConfigurationError) {
        var parser = ProfileFileParser(kind: kind, path: path)
        try parser.parse(text)
        self.kind = kind
        self.path = path
        profiles = parser.profiles
        services = parser.services
    }

    /// The header that names `profile` in this kind of file, for messages.
    public func sectionHeader(forProfile profile: String) -> String {
        kind == .config && profile != "default" ? "[profile \(profile)]" : "[\(profile)]"
    }
}
