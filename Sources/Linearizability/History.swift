import Primitives
import Services

/// One client operation as a client saw it: when it was invoked, and when and how it completed.
///
/// Histories come from the simulator's clients and from `csmr run --history`. Times are in
/// nanoseconds on one clock shared by all clients of the history.
public struct HistoryOperation: Hashable, Sendable {
    public struct Completion: Hashable, Sendable {
        public var nanoseconds: UInt64
        public var reply: Reply

        public init(nanoseconds: UInt64, reply: Reply) {
            self.nanoseconds = nanoseconds
            self.reply = reply
        }
    }

    public var client: ClientID
    public var command: Command
    public var invokeNanoseconds: UInt64
    /// Nil when no reply arrived: the operation may have taken effect at any time after its
    /// invocation, or never.
    public var completion: Completion?

    public init(client: ClientID, command: Command, invokeNanoseconds: UInt64, completion: Completion?) {
        self.client = client
        self.command = command
        self.invokeNanoseconds = invokeNanoseconds
        self.completion = completion
    }
}
