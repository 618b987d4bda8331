public import ThawImage
public import ThawSandboxCore

/// What to run in the sandbox: the handler's command line, environment, working directory and
/// user, as the image's config says, with the caller's overrides applied the way container
/// runtimes apply them.
public struct FunctionSpec: Codable, Sendable, Equatable {
    /// The PATH a handler gets when the image sets none (the one container runtimes use).
    public static let defaultPath = HandlerLauncher.defaultPath

    public var arguments: [String]
    /// `NAME=value` entries, in order; later entries win.
    public var environment: [String]
    /// Absolute, inside the image.
    public var workingDirectory: String
    /// As in an OCI config: empty (root), `user`, `uid`, `user:group` or `uid:gid`.
    public var user: String

    public init(arguments: [String], environment: [String], workingDirectory: String = "/", user: String = "") {
        self.arguments = arguments
        self.environment = environment
        self.workingDirectory = workingDirectory
        self.user = user
    }

    /// The handler an image's config names: Entrypoint followed by Cmd.
    ///
    /// - Parameters:
    ///   - command: replaces Cmd when not empty (`thaw run IMAGE -- COMMAND…`).
    ///   - entrypoint: replaces Entrypoint, and drops the image's Cmd, when given.
    ///   - environment: `NAME=value` entries added after the image's, so they win.
    /// - Throws: `SandboxError(.invalidFunction)` when nothing is left to run, or an override is malformed.
    public init(execution: ImageConfiguration.Execution?, image: String, command: [String] = [], entrypoint: [String]? = nil,
                environment: [String] = []) throws {
        let entry = entrypoint ?? execution?.entrypoint ?? []
        let cmd = command.isEmpty ? (entrypoint == nil ? execution?.cmd ?? [] : []) : command
        let arguments = entry + cmd
        guard let program = arguments.first, !program.isEmpty else {
            throw SandboxError(.invalidFunction, "image \(image) names no handler: its config has neither Entrypoint nor Cmd (give a command after --)")
        }
        for entry in environment where !entry.contains("=") || entry.hasPrefix("=") {
            throw SandboxError(.invalidFunction, "environment entry '\(entry)' is not NAME=value")
        }
        var env = execution?.env ?? []
        if !env.contains(where: { $0.hasPrefix("PATH=") }) && !environment.contains(where: { $0.hasPrefix("PATH=") }) {
            env.insert("PATH=" + Self.defaultPath, at: 0)
        }
        env += environment
        var directory = execution?.workingDir ?? ""
        if directory.isEmpty { directory = "/" }
        guard directory.hasPrefix("/") else {
            throw SandboxError(.invalidFunction, "image \(image) has a relative WorkingDir '\(directory)'")
        }
        self.init(arguments: arguments, environment: env, workingDirectory: directory, user: execution?.user ?? "")
    }

    /// The value of `name` in the environment (the last entry wins), if set.
    public func environmentValue(_ name: String) -> String? { launch.environmentValue(name) }

    /// What the sandbox's init starts.
    public var launch: HandlerLauncher.Launch {
        HandlerLauncher.Launch(arguments: arguments, environment: environment, workingDirectory: workingDirectory, user: user)
    }
}
