import Foundation
import Testing
import ThawTestSupport

/// A push killed with SIGKILL halfway leaves no manifest; running it again finishes the job,
/// uploads only what is missing, and nothing stored before changes.
@Suite struct KilledPushTests {
    @Test func aKilledPushLeavesNoManifestAndARerunFinishesIt() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let layout = TestSupport.corpus + "/oci"
            let store = dir + "/store"
            let env = ["THAW_HOME": dir + "/home"]
            try TestSupport.thaw(["push", "oci:\(layout):base", "--store", store], environment: env)
            let before = try Self.files(in: store)
            let chunksBefore = before.keys.count(where: { $0.contains("/chunks/") })

            let process = Process()
            process.executableURL = URL(fileURLWithPath: TestSupport.thawExecutable)
            process.arguments = ["push", "oci:\(layout):py", "--store", store]
            process.environment = ProcessInfo.processInfo.environment.merging(env) { $1 }
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            let deadline = Date().addingTimeInterval(120)
            while process.isRunning && Date() < deadline {
                if try Self.chunkCount(in: store) >= chunksBefore + 40 { break }
                usleep(2_000)
            }
            #expect(process.isRunning, "the push was still running when killed")
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            #expect(process.terminationReason == .uncaughtSignal)

            let afterKill = try Self.files(in: store)
            #expect(afterKill.keys.count(where: { $0.contains("/manifests/") }) == 1, "only the base manifest exists")
            for (path, bytes) in before { #expect(afterKill[path] == bytes, "\(path) is unchanged") }
            let chunksAfterKill = try Self.chunkCount(in: store)
            #expect(chunksAfterKill > chunksBefore)

            let rerun = try TestSupport.thaw(["push", "oci:\(layout):py", "--store", store], environment: env)
            let uploaded = try #require(Self.number(before: " new", in: rerun.output))
            let chunksFinal = try Self.chunkCount(in: store)
            #expect(uploaded == chunksFinal - chunksAfterKill, "the rerun uploads exactly the chunks still missing")
            let final = try Self.files(in: store)
            for (path, bytes) in afterKill where !path.contains(".tmp-") { #expect(final[path] == bytes) }

            let id = try #require(Self.manifestID(in: rerun.output))
            try TestSupport.thaw(["pull", id, "--store", store, "-o", dir + "/pulled.ext4"], environment: env)
            try TestSupport.thaw(["flatten", "oci:\(layout):py", "-o", dir + "/flat.ext4"])
            #expect(FileManager.default.contentsEqual(atPath: dir + "/pulled.ext4", andPath: dir + "/flat.ext4"))
        }
    }

    static func files(in root: String) throws -> [String: Data] {
        var files: [String: Data] = [:]
        guard let walker = FileManager.default.enumerator(atPath: root) else { return files }
        for case let path as String in walker {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: root + "/" + path, isDirectory: &isDirectory), !isDirectory.boolValue {
                files[path] = try Data(contentsOf: URL(fileURLWithPath: root + "/" + path))
            }
        }
        return files
    }

    static func chunkCount(in store: String) throws -> Int {
        let chunks = store + "/roots/r0001/chunks"
        var count = 0
        for fan in (try? FileManager.default.contentsOfDirectory(atPath: chunks)) ?? [] {
            count += ((try? FileManager.default.contentsOfDirectory(atPath: chunks + "/" + fan)) ?? []).count(where: { !$0.contains(".tmp-") })
        }
        return count
    }

    static func number(before marker: String, in text: String) -> Int? {
        guard let range = text.range(of: marker) else { return nil }
        let digits = text[..<range.lowerBound].reversed().prefix(while: \.isNumber)
        return Int(String(digits.reversed()))
    }

    static func manifestID(in text: String) -> String? {
        guard let range = text.range(of: "as manifest ") else { return nil }
        return String(text[range.upperBound...].prefix(while: { $0.isHexDigit }))
    }
}
