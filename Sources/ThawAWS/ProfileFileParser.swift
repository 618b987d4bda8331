/// The line-by-line reader behind `AWSProfileFile`.
struct ProfileFileParser {
    let kind: AWSProfileFile.Kind
    let path: String
    private(set) var profiles: [String: AWSProfile] = [:]
    private(set) var services: [String: AWSProfile] = [:]

    /// Where settings go: `nil` before the first section header.
    private var section: Section?
    /// The last unindented setting of the current section, which indented lines extend.
    private var openSetting: (name: String, hasValue: Bool)?

    private enum Section {
        case profile(String)
        case services(String)
        /// A section the file kind does not use (such as `[sso-session x]`); parsed, not kept.
        case ignored
    }

    init(kind: AWSProfileFile.Kind, path: String) {
        self.kind = kind
        self.path = path
    }

    mutating func parse(_ text: String) throws(AWSConfigurationError) {
        var text = Substring(text)
        if text.first == "\u{FEFF}" { text = text.dropFirst() }
        let lines = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline)
        for (index, line) in lines.enumerated() {
            try parseLine(line, number: index + 1)
        }
    }

    private mutating func parseLine(_ line: Substring, number: Int) throws(AWSConfigurationError) {
        let content = line.trimmingSpacesAndTabs()
        guard let first = content.first, first != "#", first != ";" else { return }
        if first == "[" {
            try openSection(content, line: number)
        } else if line.first == " " || line.first == "\t", let openSetting {
            try extend(openSetting, with: content, line: number)
        } else {
            try addSetting(content, line: number)
        }
    }

    private mutating func openSection(_ content: Substring, line: Int) throws(AWSConfigurationError) {
        guard let close = content.firstIndex(of: "]") else {
            throw malformed(line, "the section header has no closing ']'")
        }
        let rest = content[content.index(after: close)...].trimmingSpacesAndTabs()
        guard rest.isEmpty || rest.first == "#" || rest.first == ";" else {
            throw malformed(line, "unexpected text after the section header")
        }
        let name = String(content[content.index(after: content.startIndex)..<close].trimmingSpacesAndTabs())
        guard !name.isEmpty else { throw malformed(line, "the section header has no name") }
        section = try classify(name, line: line)
        openSetting = nil
        update { _ in }  // an empty section still counts as present
    }

    private func classify(_ name: String, line: Int) throws(AWSConfigurationError) -> Section {
        guard kind == .config else { return .profile(name) }
        if name == "default" { return .profile(name) }
        for (prefix, make) in [("profile", Section.profile), ("services", Section.services)] {
            guard name.hasPrefix(prefix) else { continue }
            let rest = name.dropFirst(prefix.count)
            if rest.isEmpty { throw malformed(line, "'[\(prefix)]' needs a name: '[\(prefix) NAME]'") }
            guard rest.first == " " || rest.first == "\t" else { continue }
            return make(String(rest.trimmingSpacesAndTabs()))
        }
        return .ignored
    }

    private mutating func addSetting(_ content: Substring, line: Int) throws(AWSConfigurationError) {
        let (name, value) = try split(content, line: line)
        guard section != nil else {
            throw malformed(line, "the setting '\(name)' comes before any [section] header")
        }
        store(name, AWSProfileSetting(value: value, file: path, line: line))
        openSetting = (name, !value.isEmpty)
    }

    /// An indented line: nested under a setting without value, else part of that setting's value.
    private mutating func extend(_ parent: (name: String, hasValue: Bool), with content: Substring,
                                 line: Int) throws(AWSConfigurationError) {
        if parent.hasValue {
            update { profile in profile.settings[parent.name]?.value += "\n" + Self.value(content) }
        } else {
            let (name, value) = try split(content, line: line)
            let setting = AWSProfileSetting(value: value, file: path, line: line)
            update { profile in profile.nestedSettings[parent.name, default: [:]][name] = setting }
        }
    }

    private func split(_ content: Substring, line: Int) throws(AWSConfigurationError) -> (String, String) {
        guard let equals = content.firstIndex(of: "=") else {
            throw malformed(line, "expected 'name = value', a [section] header or a comment")
        }
        let name = content[..<equals].trimmingSpacesAndTabs().lowercased()
        guard !name.isEmpty else { throw malformed(line, "the setting has no name before '='") }
        return (name, Self.value(content[content.index(after: equals)...]))
    }

    private mutating func store(_ name: String, _ setting: AWSProfileSetting) {
        update { profile in
            profile.settings[name] = setting
            profile.nestedSettings[name] = nil
        }
    }

    private mutating func update(_ change: (inout AWSProfile) -> Void) {
        switch section {
        case .profile(let name): change(&profiles[name, default: AWSProfile(name: name)])
        case .services(let name): change(&services[name, default: AWSProfile(name: name)])
        case .ignored, nil: break
        }
    }

    /// The value after `=`: an inline comment (`#` or `;` after whitespace) removed, then trimmed.
    static func value(_ raw: Substring) -> String {
        var end = raw.endIndex
        var previous: Character?
        for index in raw.indices {
            let character = raw[index]
            if character == "#" || character == ";", previous == " " || previous == "\t" {
                end = index
                break
            }
            previous = character
        }
        return String(raw[..<end].trimmingSpacesAndTabs())
    }

    private func malformed(_ line: Int, _ reason: String) -> AWSConfigurationError {
        .malformedLine(file: path, line: line, reason: reason)
    }
}
