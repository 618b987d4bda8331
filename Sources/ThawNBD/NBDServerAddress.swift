/// Where an NBD server listens.
public enum NBDServerAddress: Sendable, Hashable, CustomStringConvertible {
    /// A TCP port on `host`; port 0 takes any free port (`NBDServer.port` says which). The
    /// default host is loopback: NBD has no authentication, so it is not offered to the network
    /// unless asked for.
    case tcp(host: String = "127.0.0.1", port: Int = 0)
    /// A Unix stream socket at `path`. A stale socket file left there is replaced; it is removed
    /// when the server stops.
    case unix(path: String)

    public var description: String {
        switch self {
        case .tcp(let host, let port): host.contains(":") ? "nbd://[\(host)]:\(port)" : "nbd://\(host):\(port)"
        case .unix(let path): "nbd+unix:///?socket=\(path)"
        }
    }
}
