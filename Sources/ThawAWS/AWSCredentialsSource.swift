/// Where resolved credentials came from, for diagnostics ("signed as … from …").
public enum AWSCredentialsSource: Sendable, Hashable, CustomStringConvertible {
    /// Passed in by the caller, typically from command-line options.
    case explicit
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
    case environment
    case credentialsFile(path: String, profile: String)
    case configFile(path: String, profile: String)

    public var description: String {
        switch self {
        case .explicit: "explicit values"
        case .environment: "environment variables"
        case .credentialsFile(let path, let profile): "profile '\(profile)' in \(path)"
        case .configFile(let path, let profile): "profile '\(profile)' in \(path)"
        }
    }
}
