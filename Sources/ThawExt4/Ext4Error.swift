/// Why a tree cannot be written as ext4: a name, target, attribute or size ext4 cannot hold.
public struct Ext4Error: Error, Sendable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
