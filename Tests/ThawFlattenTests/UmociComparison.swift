import Foundation
import Testing
import ThawTestSupport

/// Checks a flattened image the two ways the issue asks: e2fsck is clean, and the tree read back
/// (a kernel loop mount; debugfs rdump, which drops special bits, devices, xattrs, hard links and
/// symlink owners) equals `umoci unpack` of the same image.
func expectMatchesUmoci(image output: String, layout: String, tag: String, workingIn dir: String,
                        mountOptions: [String] = ["--mtime"]) throws {
    if let problems = try TestSupport.fsckProblems(output) { Issue.record("\(tag): e2fsck: \(problems)") }
    let expected = try Fixtures.umociUnpack(layout, tag: tag, into: dir + "/bundle")
    try TestSupport.withLoopMount(output, at: dir + "/mnt") {
        if let differences = try Fixtures.compareTrees(expected: expected, actual: dir + "/mnt", options: mountOptions) {
            Issue.record("\(tag): loop mount differs from umoci unpack:\n\(differences)")
        }
    }
    try FileManager.default.createDirectory(atPath: dir + "/rdump", withIntermediateDirectories: true)
    try TestSupport.run("debugfs", ["-R", "rdump / \(dir)/rdump", output])
    let rdumpOptions = ["--ignore-hardlinks", "--ignore-xattrs", "--ignore-devices", "--ignore-special-bits", "--ignore-symlink-owners"]
    if let differences = try Fixtures.compareTrees(expected: expected, actual: dir + "/rdump", options: rdumpOptions) {
        Issue.record("\(tag): debugfs rdump differs from umoci unpack:\n\(differences)")
    }
}
