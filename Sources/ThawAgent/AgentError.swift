/// Something the agent was asked for that it cannot do, with what was asked.
public struct AgentError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable, Equatable {
        /// No served image has that id.
        case notServed
        /// The manifest cannot be found, opened or read.
        case cannotOpen
        /// The address, directory or a setting is unusable.
        case invalidConfiguration
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}
