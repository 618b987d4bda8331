import ArgumentParser

/// `thaw demo`: the main job on embedded defaults.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Build a sample image and flatten it, printing what happened.")
    func run() throws {}
}
