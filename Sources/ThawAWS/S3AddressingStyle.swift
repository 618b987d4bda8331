/// How a bucket appears in S3 URLs: `https://bucket.host/key` (virtual) or `https://host/bucket/key` (path).
public enum S3AddressingStyle: String, Sendable, Hashable, CaseIterable {
    /// Virtual-hosted against AWS itself, path style against any other endpoint (what
    /// S3-compatible servers expect), and path style for bucket names with dots over https,
    /// which a virtual host name would put outside the server's certificate.
    case auto
    /// Always `host/bucket/key`; what most S3-compatible servers (MinIO, Ceph) need.
    case path
    /// Always `bucket.host/key`.
    case virtual
}
