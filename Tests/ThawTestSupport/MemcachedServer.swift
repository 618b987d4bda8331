import Foundation

/// A real memcached (Debian package memcached), started on a free loopback port.
public final class MemcachedServer: @unchecked Sendable {
    public let port: Int
    public let process: BackgroundProcess

    /// - Parameter reusing: a port to listen on again (a restart); nil takes a free one.
    public init(itemSize: String = "2m", reusing: Int? = nil) throws {
        let chosen = try reusing ?? TestSupport.freePort()
        port = chosen
        // memcached refuses an item size below its largest slab chunk (512 KiB): lower that too.
        let small = ["-o", "slab_chunk_max=65536"]
        process = try BackgroundProcess("memcached", ["-l", "127.0.0.1", "-p", "\(chosen)", "-U", "0", "-u", "root",
                                                      "-m", "64", "-I", itemSize] + (itemSize.hasSuffix("k") ? small : []))
        try TestSupport.waitForPort(chosen, what: "memcached")
    }

    deinit { process.stop() }
}
