import ArgumentParser

/// `thaw`: the command line over Thaw's libraries.
@main
struct Thaw: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "thaw",
        abstract: "Load container images on demand for fast serverless cold starts.",
        subcommands: [Demo.self, Flatten.self, Push.self, Relayout.self, Functions.self, Roots.self, GC.self, Pull.self, Inspect.self, AgentCommand.self, Serve.self, Mount.self, Stats.self, Started.self, Run.self, SnapshotCommand.self, ServeAPI.self, SandboxInitCommand.self]
    )
}
