/// Why the AWS configuration could not be resolved; each case names the file, line, variable
/// or list of places involved, so the message alone tells the user what to fix.
public enum AWSConfigurationError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A line of a config or credentials file is not a comment, section header or setting.
    case malformedLine(file: String, line: Int, reason: String)
    /// The file exists but could not be read as UTF-8 text.
    case unreadableFile(path: String, reason: String)
    /// A profile was asked for by name and neither file has it.
    case profileNotFound(profile: String, searchedFiles: [String])
    /// One place gave half of an access key pair: an error rather than a fall-through, because
    /// silently taking keys from somewhere else would sign as the wrong identity.
    case incompleteCredentials(source: String, missing: String)
    /// No place gave an access key pair; `searched` says what each place lacked.
    case missingCredentials(profile: String, searched: [String])
    /// A value is present but unusable.
    case invalidSetting(name: String, value: String, location: String, expected: String)
    /// No place gave a region.
    case missingRegion(profile: String, searched: [String])

    public var description: String {
        switch self {
        case .malformedLine(let file, let line, let reason):
            "\(file):\(line): \(reason)"
        case .unreadableFile(let path, let reason):
            "cannot read \(path): \(reason)"
        case .profileNotFound(let profile, let files):
            "the AWS profile '\(profile)' is not defined; looked in:\n" + Self.bullets(files)
        case .incompleteCredentials(let source, let missing):
            "\(source) gives only part of the AWS credentials: \(missing) is missing"
        case .missingCredentials(let profile, let searched):
            "no AWS credentials found for profile '\(profile)'; looked at:\n" + Self.bullets(searched)
        case .invalidSetting(let name, let value, let location, let expected):
            "\(location): \(name) is '\(value)', expected \(expected)"
        case .missingRegion(let profile, let searched):
            "no AWS region configured for profile '\(profile)'; looked at:\n" + Self.bullets(searched)
        }
    }

    private static func bullets(_ lines: [String]) -> String {
        lines.map { "  - \($0)" }.joined(separator: "\n")
    }
}
