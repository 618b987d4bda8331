/// How a bucket appears in S3 URLs: `https://bucket.host/key` (virtual) or `https://host/bucket/key` (path).
public enum S3AddressingStyle: String, Sendable, Hashable, CaseIterable {
    /// Virtual-hosted where the bucket name allows it, path style otherwise.
    case auto
    /// Always `host/bucket/key`; what most S3-compatible servers (MinIO, Ceph) need.
    case path
    /// Always `bucket.host/key`.
    case virtual
}
