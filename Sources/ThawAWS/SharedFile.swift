/// One of the two shared files as found (or not found) during resolution.
struct SharedFile {
    enum State {
        /// No path could be formed: the default path needs `HOME`, which is not set.
        case unlocated
        case missing
        case parsed(AWSProfileFile)
    }

    let kind: AWSProfileFile.Kind
    let path: String?
    let state: State

    /// Locates and parses the file; a missing file is normal and not an error.
    static func load(
        kind: AWSProfileFile.Kind, configuredPath: String?, defaultPath: String, home: String?,
        readFile: (String) throws -> String?
    ) throws(AWSConfigurationError) -> SharedFile {
        guard let path = expandingHome(configuredPath ?? defaultPath, home: home) else {
            return SharedFile(kind: kind, path: nil, state: .unlocated)
        }
        let text: String?
        do {
            text = try readFile(path)
        } catch {
            throw .unreadableFile(path: path, reason: "\(error)")
        }
        guard let text else { return SharedFile(kind: kind, path: path, state: .missing) }
        return SharedFile(kind: kind, path: path, state: .parsed(try AWSProfileFile(parsing: text, kind: kind, path: path)))
    }

    var parsed: AWSProfileFile? {
        if case .parsed(let file) = state { file } else { nil }
    }

    func profile(named name: String) -> AWSProfile? {
        parsed?.profiles[name]
    }

    /// "config file /home/me/.aws/config", for the lists of places looked at.
    var label: String {
        let noun = kind == .config ? "config file" : "credentials file"
        return path.map { "\(noun) \($0)" } ?? noun
    }

    /// Why this file cannot supply `profile`, or `nil` when it has the profile.
    func absenceOfProfile(_ profile: String) -> String? {
        switch state {
        case .unlocated:
            let variable = kind == .config ? "AWS_CONFIG_FILE" : "AWS_SHARED_CREDENTIALS_FILE"
            return "\(label): no path, because neither \(variable) nor HOME is set"
        case .missing:
            return "\(label): not found"
        case .parsed(let file):
            return file.profiles[profile] == nil ? "\(label): no \(file.sectionHeader(forProfile: profile)) section" : nil
        }
    }

    /// `~` and `~/…` resolve against `HOME`; other paths are used as given.
    static func expandingHome(_ path: String, home: String?) -> String? {
        guard path == "~" || path.hasPrefix("~/") else { return path }
        guard let home, !home.isEmpty else { return nil }
        let base = home.hasSuffix("/") ? String(home.dropLast()) : home
        return base + path.dropFirst()
    }
}
