import Foundation
import Testing
import ThawTestSupport

/// Checks a flattened image the two ways the issue asks: e2fsck is clean, and the tree read back
/// (a kernel loop mount; debugfs rdump, which drops special bits, devices, xattrs, hard links and
/// symlink owners) equals `umoci unpack` of the same image.
func expectMatchesUmoci(image output: String, layout: String, tag: String, workingIn dir: String,
                        mountOptions: [String] = ["--mtime"]) throws {
    for problem in try umociDifferences(image: output, layout: layout, tag: tag, workingIn: dir, mountOptions: mountOptions) {
        Issue.record("\(problem)")
    }
}

/// `expectMatchesUmoci` with the unpacking, mounting and comparing on a thread of its own, so a
/// corpus image's minutes of it do not hold a thread of Swift's concurrency pool.
func expectMatchesUmociOffPool(image output: String, layout: String, tag: String, workingIn dir: String) async throws {
    let problems = try await TestSupport.onOwnThread {
        try umociDifferences(image: output, layout: layout, tag: tag, workingIn: dir, mountOptions: ["--mtime"])
    }
    for problem in problems { Issue.record("\(problem)") }
}

/// What differs between the image and `umoci unpack`, one entry per check that failed.
func umociDifferences(image output: String, layout: String, tag: String, workingIn dir: String,
                      mountOptions: [String]) throws -> [String] {
    var problems: [String] = []
    if let fsck = try TestSupport.fsckProblems(output) { problems.append("\(tag): e2fsck: \(fsck)") }
    let expected = try Fixtures.umociUnpack(layout, tag: tag, into: dir + "/bundle")
    try TestSupport.withLoopMount(output, at: dir + "/mnt") {
        if let differences = try Fixtures.compareTrees(expected: expected, actual: dir + "/mnt", options: mountOptions) {
            problems.append("\(tag): loop mount differs from umoci unpack:\n\(differences)")
        }
    }
    try FileManager.default.createDirectory(atPath: dir + "/rdump", withIntermediateDirectories: true)
    try TestSupport.run("debugfs", ["-R", "rdump / \(dir)/rdump", output])
    let rdumpOptions = ["--ignore-hardlinks", "--ignore-xattrs", "--ignore-devices", "--ignore-special-bits", "--ignore-symlink-owners"]
    if let differences = try Fixtures.compareTrees(expected: expected, actual: dir + "/rdump", options: rdumpOptions) {
        problems.append("\(tag): debugfs rdump differs from umoci unpack:\n\(differences)")
    }
    return problems
}
