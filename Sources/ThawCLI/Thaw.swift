import ArgumentParser

/// `thaw`: the command line over Thaw's libraries.
@main
struct Thaw: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "thaw",
        abstract: "Load container images on demand for fast serverless cold starts.",
        subcommands: [Flatten.self, Demo.self]
    )
}
