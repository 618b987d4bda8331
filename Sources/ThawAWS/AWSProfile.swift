/// One value from a shared config or credentials file, with where it was written, so a bad
/// value can be reported at its line.
public struct AWSProfileSetting: Sendable, Hashable {
    public var value: String
    public var file: String
    public var line: Int

    public init(value: String, file: String, line: Int) {
        self.value = value
        self.file = file
        self.line = line
    }

    /// `file:line`, the form editors and terminals turn into a link.
    public var location: String { "\(file):\(line)" }
}

/// The settings of one section of a shared config or credentials file.
///
/// Names are lowercase. A setting written with an empty value and indented lines below it
/// (`s3 =` followed by `  addressing_style = path`) holds those lines in `nestedSettings`.
public struct AWSProfile: Sendable, Hashable {
    public var name: String
    public var settings: [String: AWSProfileSetting]
    public var nestedSettings: [String: [String: AWSProfileSetting]]

    public init(name: String, settings: [String: AWSProfileSetting] = [:],
                nestedSettings: [String: [String: AWSProfileSetting]] = [:]) {
        self.name = name
        self.settings = settings
        self.nestedSettings = nestedSettings
    }

    /// The setting, when it is present with a value; an empty value counts as absent, as it
    /// does for the AWS CLI.
    public func setting(_ name: String) -> AWSProfileSetting? {
        settings[name.lowercased()].flatMap { $0.value.isEmpty ? nil : $0 }
    }

    /// A nested setting such as `addressing_style` under `s3`.
    public func setting(_ name: String, in parent: String) -> AWSProfileSetting? {
        nestedSettings[parent.lowercased()]?[name.lowercased()].flatMap { $0.value.isEmpty ? nil : $0 }
    }
}
