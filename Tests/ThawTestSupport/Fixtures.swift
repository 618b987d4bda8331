import Foundation

/// Test images built by `Tests/Fixtures/make-image.py` (Python's own tarfile, an independent
/// tar writer) and trees compared by `Tests/Fixtures/compare-trees.py`.
public enum Fixtures {
    public static var directory: String { TestSupport.repositoryRoot + "/Tests/Fixtures" }

    /// Writes image `variant` into the OCI layout `layout` under `tag`.
    public static func make(_ variant: String, in layout: String, tag: String? = nil, compression: String = "gzip",
                            dockerArchive: String? = nil) throws {
        var arguments = [directory + "/make-image.py", layout, "--variant", variant, "--compression", compression,
                         "--tag", tag ?? variant]
        if let dockerArchive { arguments += ["--docker-archive", dockerArchive] }
        try TestSupport.run("python3", arguments)
    }

    /// Compares two trees; nil when equal, the differences otherwise.
    public static func compareTrees(expected: String, actual: String, options: [String] = []) throws -> String? {
        let result = try TestSupport.run("python3", [directory + "/compare-trees.py", expected, actual] + options, check: false)
        if result.status == 2 { throw TestSupport.CommandFailed(description: result.output) }
        return result.status == 0 ? nil : result.output
    }

    /// `umoci unpack` of `layout:tag` into `bundle`; returns the rootfs path.
    public static func umociUnpack(_ layout: String, tag: String, into bundle: String) throws -> String {
        try TestSupport.run("umoci", ["unpack", "--image", "\(layout):\(tag)", bundle])
        return bundle + "/rootfs"
    }
}
