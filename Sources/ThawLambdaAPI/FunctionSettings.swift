public import Foundation

/// What the Lambda API keeps about a function beside its name and manifest: the settings
/// CreateFunction and UpdateFunctionCode take, stored as JSON in Thaw's metadata.
public struct FunctionSettings: Codable, Sendable, Equatable {
    /// The `Code.ImageUri` the function was created or last updated from.
    public var imageURI: String
    public var description: String = ""
    public var role: String = ""
    /// Seconds an invocation may run.
    public var timeout: Int = 3
    public var memorySize: Int = 128
    public var environment: [String: String] = [:]
    public var entryPoint: [String]?
    public var command: [String]?
    public var workingDirectory: String?
    public var lastModified: Date
    /// Bytes of the image.
    public var codeSize: UInt64 = 0
    /// Bumped by every change; Lambda's RevisionId.
    public var revision: Int = 1
    /// The manifest the function was created or last updated with: Lambda's CodeSha256 while
    /// the name points at that code (`LambdaService.codeSHA256(of:settings:)`). A relayout
    /// points the function at another manifest holding the same files, and leaves this as it
    /// is, so that clients comparing it see no change of code. Nil in settings stored before it
    /// was kept: the current manifest is reported then.
    public var codeSHA256: String?

    public init(imageURI: String, lastModified: Date) {
        self.imageURI = imageURI
        self.lastModified = lastModified
    }

    /// The limits Lambda puts on these settings.
    public static let timeoutRange = 1...900
    public static let memoryRange = 128...10_240

    func encoded() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .millisecondsSince1970
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }

    static func decode(_ document: String) throws -> FunctionSettings {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .millisecondsSince1970
        return try decoder.decode(FunctionSettings.self, from: Data(document.utf8))
    }
}
