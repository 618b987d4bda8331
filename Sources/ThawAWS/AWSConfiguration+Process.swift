import Foundation

extension AWSConfiguration {
    /// Resolves from this process's environment and the real files: the one place that
    /// performs I/O. `HOME` falls back to the account's home directory when unset.
    public static func fromProcessEnvironment(
        overrides: AWSConfigurationOverrides = AWSConfigurationOverrides()
    ) throws(AWSConfigurationError) -> AWSConfiguration {
        var environment = ProcessInfo.processInfo.environment
        if environment["HOME", default: ""].isEmpty {
            environment["HOME"] = FileManager.default.homeDirectoryForCurrentUser.path
        }
        return try resolve(overrides: overrides, environment: environment, readFile: readTextFileIfPresent)
    }

    /// The file's text, or `nil` when nothing exists at `path`. Read through a file handle, not
    /// `Data(contentsOf:)`, so that character devices such as `/dev/null` (a common way to
    /// switch a file off) read as empty.
    static func readTextFileIfPresent(_ path: String) throws -> String? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        let data = try handle.readToEnd() ?? Data()
        guard let text = String(data: data, encoding: .utf8) else { throw FileIsNotUTF8() }
        return text
    }
}

/// A shared config or credentials file must be UTF-8 text.
struct FileIsNotUTF8: Error, CustomStringConvertible {
    var description: String { "the file is not UTF-8 text" }
}
