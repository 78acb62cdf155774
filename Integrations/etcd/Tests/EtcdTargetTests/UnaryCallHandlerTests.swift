@testable import EtcdTarget
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP2
import Testing

/// The unary call handler on frames (no server): what it sends for a call, and how each way a
/// response can end completes the call.
struct UnaryCallHandlerTests {
    final class Outcomes: Sendable {
        let results = NIOLockedValueBox<[UInt64: Result<ByteBuffer, UnaryCallError>]>([:])
        func completion(_ id: UInt64) -> UnaryCompletion {
            { result in self.results.withLockedValue { $0[id] = result } }
        }
        subscript(id: UInt64) -> Result<ByteBuffer, UnaryCallError>? { results.withLockedValue { $0[id] } }
    }

    final class Closes: Sendable {
        let reasons = NIOLockedValueBox<[String]>([])
    }

    func makeChannel(closes: Closes = Closes()) throws -> (EmbeddedChannel, UnaryCallHandler) {
        let handler = UnaryCallHandler(authority: "127.0.0.1:2379", onClose: { _, why in closes.reasons.withLockedValue { $0.append(why) } })
        let channel = EmbeddedChannel(handler: handler)
        return (channel, handler)
    }

    func framed(_ message: [UInt8]) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt8(0))
        buffer.writeInteger(UInt32(message.count))
        buffer.writeBytes(message)
        return buffer
    }

    func call(_ id: UInt64, _ outcomes: Outcomes, message: [UInt8] = [1, 2, 3]) -> UnaryCallHandler.Call {
        UnaryCallHandler.Call(id: id, path: "/etcdserverpb.KV/Put", message: message, completion: outcomes.completion(id))
    }

    func written(_ channel: EmbeddedChannel) throws -> [HTTP2Frame] {
        channel.embeddedEventLoop.run()
        var frames: [HTTP2Frame] = []
        while let frame = try channel.readOutbound(as: HTTP2Frame.self) { frames.append(frame) }
        return frames
    }

    func respond(_ channel: EmbeddedChannel, stream: Int32, message: [UInt8]?, status: String = "0", dataCut: Int? = nil) throws {
        let id = HTTP2StreamID(stream)
        try channel.writeInbound(HTTP2Frame(streamID: id, payload: .headers(.init(headers: [":status": "200", "content-type": "application/grpc"]))))
        if let message {
            let body = framed(message)
            if let dataCut {
                try channel.writeInbound(HTTP2Frame(streamID: id, payload: .data(.init(data: .byteBuffer(body.getSlice(at: 0, length: dataCut)!)))))
                try channel.writeInbound(HTTP2Frame(streamID: id, payload: .data(.init(data: .byteBuffer(body.getSlice(at: dataCut, length: body.readableBytes - dataCut)!)))))
            } else {
                try channel.writeInbound(HTTP2Frame(streamID: id, payload: .data(.init(data: .byteBuffer(body)))))
            }
        }
        try channel.writeInbound(HTTP2Frame(streamID: id, payload: .headers(.init(headers: ["grpc-status": status], endStream: true))))
    }

    @Test func aCallIsHeadersThenOnePrefixedMessageOnANewOddStream() throws {
        let (channel, handler) = try makeChannel()
        let outcomes = Outcomes()
        handler.start(call(1, outcomes, message: [9, 8, 7]))
        handler.start(call(2, outcomes))
        let frames = try written(channel)
        #expect(frames.map(\.streamID) == [1, 1, 3, 3].map { HTTP2StreamID($0) })
        guard case let .headers(headers) = frames[0].payload, case let .data(data) = frames[1].payload,
              case let .byteBuffer(body) = data.data else {
            Issue.record("expected HEADERS then DATA, got \(frames)")
            return
        }
        #expect(headers.headers.first(name: ":path") == "/etcdserverpb.KV/Put")
        #expect(headers.headers.first(name: "content-type") == "application/grpc")
        #expect(headers.headers.first(name: "te") == "trailers")
        #expect(!headers.endStream && data.endStream)
        #expect(Array(body.readableBytesView) == [0, 0, 0, 0, 3, 9, 8, 7])
        _ = try channel.finish()
    }

    @Test func responsesCompleteTheirOwnCallsWhereverTheirDataIsCut() throws {
        for cut in [nil, 1, 3, 5, 6] as [Int?] {
            let (channel, handler) = try makeChannel()
            let outcomes = Outcomes()
            handler.start(call(1, outcomes))
            handler.start(call(2, outcomes))
            _ = try written(channel)
            try respond(channel, stream: 3, message: [4, 4], dataCut: cut)
            try respond(channel, stream: 1, message: [1, 1, 1], dataCut: cut)
            let first = try #require(outcomes[1]).get(), second = try #require(outcomes[2]).get()
            #expect(Array(first.readableBytesView) == [1, 1, 1], "cut \(String(describing: cut))")
            #expect(Array(second.readableBytesView) == [4, 4], "cut \(String(describing: cut))")
            _ = try channel.finish()
        }
    }

    @Test func aStatusOtherThanOKFailsTheCallWithIt() throws {
        let (channel, handler) = try makeChannel()
        let outcomes = Outcomes()
        handler.start(call(1, outcomes))
        handler.start(call(2, outcomes))
        _ = try written(channel)
        // Trailers-only: one header block, END_STREAM, status and message.
        try channel.writeInbound(HTTP2Frame(streamID: 1, payload: .headers(.init(
            headers: [":status": "200", "grpc-status": "14", "grpc-message": "etcdserver: leader changed"], endStream: true))))
        try respond(channel, stream: 3, message: nil, status: "8")
        #expect(outcomes[1].map { if case .failure(.status(14, "etcdserver: leader changed")) = $0 { true } else { false } } == true)
        #expect(outcomes[2].map { if case .failure(.status(8, "")) = $0 { true } else { false } } == true)
        _ = try channel.finish()
    }

    @Test func aGoAwayFailsOnlyTheStreamsTheServerNeverProcessedAsNeverApplied() throws {
        let (channel, handler) = try makeChannel()
        let outcomes = Outcomes()
        for id in 1...3 { handler.start(call(UInt64(id), outcomes)) }
        _ = try written(channel)
        try channel.writeInbound(HTTP2Frame(streamID: .rootStream, payload: .goAway(lastStreamID: 3, errorCode: .noError, opaqueData: nil)))
        #expect(outcomes[1] == nil && outcomes[2] == nil)
        #expect(outcomes[3].map { if case let .failure(error) = $0 { error.neverApplied } else { false } } == true)
        #expect(!handler.isWritable)
        try respond(channel, stream: 1, message: [1])
        try respond(channel, stream: 3, message: [3])
        let second = try #require(outcomes[2]).get()
        #expect(Array(second.readableBytesView) == [3])
        _ = try? channel.finish()
    }

    @Test func aResetOrTheConnectionsEndFailsCallsThatMayHaveApplied() throws {
        let closes = Closes()
        let (channel, handler) = try makeChannel(closes: closes)
        let outcomes = Outcomes()
        for id in 1...3 { handler.start(call(UInt64(id), outcomes)) }
        _ = try written(channel)
        try channel.writeInbound(HTTP2Frame(streamID: 1, payload: .rstStream(.internalError)))
        try channel.writeInbound(HTTP2Frame(streamID: 3, payload: .rstStream(.refusedStream)))
        #expect(outcomes[1].map { if case .failure(.unavailable) = $0 { true } else { false } } == true)
        #expect(outcomes[2].map { if case let .failure(error) = $0 { error.neverApplied } else { false } } == true)
        channel.pipeline.fireChannelInactive()
        #expect(outcomes[3].map { if case .failure(.unavailable) = $0 { true } else { false } } == true)
        #expect(closes.reasons.withLockedValue { $0.count } == 1)
        _ = try? channel.finish()
    }

    @Test func creditIsReturnedForTheConnectionAsResponsesArrive() throws {
        let (channel, handler) = try makeChannel()
        let outcomes = Outcomes()
        let responseBytes = 1_000
        let calls = UnaryCallHandler.connectionWindowBytes / (responseBytes + 5) + 2
        for id in 1...calls { handler.start(call(UInt64(id), outcomes)) }
        _ = try written(channel)
        var returned = 0
        for index in 0..<calls {
            try respond(channel, stream: Int32(2 * index + 1), message: Array(repeating: 7, count: responseBytes))
            for frame in try written(channel) {
                if frame.streamID == .rootStream, case let .windowUpdate(increment) = frame.payload { returned += increment }
            }
        }
        #expect(returned >= UnaryCallHandler.connectionWindowBytes / 2)
        #expect(returned <= calls * (responseBytes + 5))
        _ = try channel.finish()
    }

    @Test func malformedResponsesFailTheCallAndNeverCrash() throws {
        for bytes: [UInt8] in [[], [0, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 9, 1], [0, 0, 0, 0, 1, 1, 2], [0, 0xFF, 0xFF, 0xFF, 0xFF]] {
            let result = UnaryCallHandler.message(in: ByteBuffer(bytes: bytes))
            #expect(result.map { _ in false }.mapError { _ in UnaryCallError.deadlineExceeded } == .failure(.deadlineExceeded), "\(bytes)")
        }
        let message = try UnaryCallHandler.message(in: ByteBuffer(bytes: [0, 0, 0, 0, 2, 5, 6])).get()
        #expect(Array(message.readableBytesView) == [5, 6])
    }
}
