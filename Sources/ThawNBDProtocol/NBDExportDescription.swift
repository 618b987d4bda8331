/// What the handshake tells a client about one export.
public struct NBDExportDescription: Sendable, Hashable {
    /// The canonical name, sent for `NBD_INFO_NAME`.
    public var name: String
    /// Size in bytes.
    public var size: UInt64
    /// Text for people, sent for `NBD_INFO_DESCRIPTION` when there is one.
    public var description: String?
    public var flags: NBDTransmissionFlags

    public init(name: String, size: UInt64, description: String? = nil, flags: NBDTransmissionFlags = .thawExport) {
        self.name = name
        self.size = size
        self.description = description
        self.flags = flags
    }
}
