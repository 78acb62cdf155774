import Primitives
import Services
import Testing
import Wire

@Suite struct ClientPortTests {
    private let nonce = ClientID(ClientID.nonceRange.lowerBound | 12_345)

    @Test func extensionStepsAreRefusedOnTheClientPort() {
        let step = Request(client: .extensionClient(origin: 0), sequence: 1, command: .logAppendFrom(origin: 0, index: 1, entry: "g0#1 k=v"))
        #expect(ClientPortPolicy.admit(step) == .failure(.notPermitted))
        // Whatever id it claims.
        #expect(ClientPortPolicy.admit(Request(client: ClientID(3), sequence: 9, command: step.command)) == .failure(.notPermitted))
    }

    @Test func sessionsOpenOnlyWithANonce() {
        #expect(ClientPortPolicy.admit(Request(client: nonce, sequence: 1, command: .openSession)) == nil)
        #expect(ClientPortPolicy.admit(Request(client: ClientID(5), sequence: 1, command: .openSession)) == .failure(.notPermitted))
    }

    @Test func clientCommandsAreAdmitted() {
        let commands: [Command] = [.kvGet(key: "k"), .kvPut(key: "k", value: "v"), .lockAcquire(name: "L"), .lockRelease(name: "L"),
                                   .logAppend(entry: "e"), .logRetrieve(first: 0, last: 1), .logTruncate(index: 0)]
        for command in commands { #expect(ClientPortPolicy.admit(Request(client: ClientID(5), sequence: 2, command: command)) == nil) }
    }

    @Test func aRedirectToAReplicaBeyondTheLimitIsMalformed() {
        var bytes = WireFormat.encode(.redirect(Redirect(client: ClientID(1), sequence: 1, reason: .notLeader, replica: 0)))
        bytes[bytes.count - 2] = 0x10
        #expect(throws: WireError.self) { try WireFormat.decode(bytes) }
        var reason = WireFormat.encode(.redirect(Redirect(client: ClientID(1), sequence: 1, reason: .notLeader, replica: 0)))
        reason[reason.count - 5] = 9
        #expect(throws: WireError.self) { try WireFormat.decode(reason) }
    }
}
