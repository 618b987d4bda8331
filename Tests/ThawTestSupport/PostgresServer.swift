import Foundation

/// A real PostgreSQL server (Debian package postgresql), initialised in a directory of its own
/// and started on a free loopback port as the `postgres` user, with trust authentication for
/// the role `thaw`. Stopped (and its directory removed) when released.
public final class PostgresServer: @unchecked Sendable {
    public let port: Int
    public let directory: String
    public let process: BackgroundProcess
    public static let user = "thaw"

    /// Starts a server on a thread of its own: `initdb` and the wait for readiness take
    /// seconds, which must not hold one of the two threads Swift's concurrency runs on.
    public static func start() async throws -> PostgresServer {
        try await TestSupport.onOwnThread { try PostgresServer() }
    }

    init() throws {
        let versions = try FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql").compactMap(Int.init).sorted()
        guard let version = versions.last else { throw PostgresServerError(description: "PostgreSQL is not installed (scripts/setup.sh test)") }
        let bin = "/usr/lib/postgresql/\(version)/bin"
        directory = "/tmp/thaw-postgres-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o755])
        try TestSupport.run("chown", ["postgres:postgres", directory])
        try TestSupport.run("setpriv", ["--reuid=postgres", "--regid=postgres", "--init-groups", "--",
                                        bin + "/initdb", "-D", directory + "/data", "-A", "trust", "-U", Self.user, "-E", "UTF8", "--no-sync"])
        port = try TestSupport.freePort()
        // setpriv execs postgres itself, so stopping this process stops the server.
        process = try BackgroundProcess("setpriv", ["--reuid=postgres", "--regid=postgres", "--init-groups", "--",
                                                    bin + "/postgres", "-D", directory + "/data", "-p", "\(port)", "-k", directory,
                                                    "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
                                        logPath: directory + "/server.log")
        try TestSupport.waitForPort(port, what: "PostgreSQL (log: \(directory)/server.log)")
        // The port opens before the server takes sessions ("the database system is starting up").
        let deadline = Date().addingTimeInterval(30)
        while try TestSupport.run("pg_isready", ["-h", "127.0.0.1", "-p", "\(port)", "-U", Self.user], check: false).status != 0 {
            guard Date() < deadline else { throw PostgresServerError(description: "PostgreSQL on port \(port) never became ready (log: \(directory)/server.log)") }
            usleep(100_000)
        }
    }

    /// A new, empty database, and its URL for `--metadata`.
    public func createDatabase(_ name: String) async throws -> String {
        let port = self.port
        try await TestSupport.onOwnThread {
            _ = try TestSupport.run("psql", ["-h", "127.0.0.1", "-p", "\(port)", "-U", Self.user, "-d", "postgres", "-q", "-c", "CREATE DATABASE \(name)"])
        }
        return "postgres://\(Self.user)@127.0.0.1:\(port)/\(name)"
    }

    deinit {
        process.stop(grace: 10)
        try? FileManager.default.removeItem(atPath: directory)
    }
}

struct PostgresServerError: Error, CustomStringConvertible {
    var description: String
}
