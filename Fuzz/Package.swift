// swift-tools-version:6.1
import PackageDescription

/// libFuzzer harnesses for Thaw's wire formats, kept apart from the main package because every
/// target here is built with `-sanitize=fuzzer`. `Sources/ThawNBDProtocol` is a link to the main
/// package's target, so the code fuzzed is the code shipped. Run through scripts/fuzz-nbd.sh.
let package = Package(
    name: "ThawFuzz",
    targets: [
        .target(name: "ThawNBDProtocol"),
        .executableTarget(name: "FuzzNBD", dependencies: ["ThawNBDProtocol"]),
    ]
)
