import NIOCore

/// Counters of one link (a peer, or a client connection). Bytes count whole frames, header
/// included.
public struct LinkCounters: Hashable, Sendable {
    /// Frames handed to the socket (written; a frame still unflushed when the connection drops is
    /// counted here and lost).
    public var framesSent = 0
    public var bytesSent = 0
    public var framesReceived = 0
    public var bytesReceived = 0
    /// Frames refused because the send queue held `sendQueueBytesMax` bytes.
    public var framesDropped = 0
    /// Connections established after the first one.
    public var reconnects = 0
    /// Frames to a blocked peer (a partition), dropped where they leave: sent while blocked, or
    /// still queued when the block began.
    public var framesBlockedSent = 0
    /// Frames from a blocked peer, dropped on arrival.
    public var framesBlockedReceived = 0

    public init() {}
}

/// The frames waiting to leave on one link, bounded in bytes, with an emulated one-way delay.
///
/// Frames enter `pending` with the time they may leave (now + delay); `drain` writes them in order
/// while the channel is writable and their time has come, so the queue bounds everything the
/// transport holds for the link: frames waiting for a connection, for their delay, or for the
/// socket to drain (beyond the channel's own high water mark). When full, the newest frame is
/// dropped and counted: Paxos retransmits, and a client retries.
///
/// Writes are not flushed one by one: the first write of an event-loop turn schedules one flush
/// with `loop.execute`, which runs after the work already queued on the loop, so a burst of sends
/// leaves in few syscalls.
///
/// Confined to `loop`: every method must be called on it (closures that come back later hold it
/// through `NIOLoopBound`, which checks).
final class OutboundQueue {
    let loop: EventLoop
    let sendQueueBytesMax: Int
    /// One-way delay added to every frame from now on; order is kept even when it changes.
    var delayMicroseconds: Int64 = 0
    var counters = LinkCounters()

    private var pending = CircularBuffer<(due: NIODeadline, frame: ByteBuffer)>()
    private(set) var pendingBytes = 0
    private var channel: Channel?
    private var flushScheduled = false
    private var delayTimer: Scheduled<Void>?

    init(loop: EventLoop, sendQueueBytesMax: Int) {
        precondition(sendQueueBytesMax > 0, "sendQueueBytesMax must be positive, got \(sendQueueBytesMax)")
        self.loop = loop
        self.sendQueueBytesMax = sendQueueBytesMax
    }

    /// Queues one encoded frame; false (and counted) when the queue is full.
    @discardableResult
    func enqueue(_ frame: ByteBuffer) -> Bool {
        loop.preconditionInEventLoop()
        guard pendingBytes + frame.readableBytes <= sendQueueBytesMax else {
            counters.framesDropped += 1
            return false
        }
        let due = delayMicroseconds > 0 ? NIODeadline.now() + .microseconds(delayMicroseconds) : .uptimeNanoseconds(0)
        pending.append((due, frame))
        pendingBytes += frame.readableBytes
        drain()
        return true
    }

    /// Starts writing to `channel` (a new connection). Frames queued meanwhile go out first.
    func attach(_ channel: Channel) {
        loop.preconditionInEventLoop()
        self.channel = channel
        drain()
    }

    /// The connection is gone; frames still queued wait for the next one.
    func detach() {
        loop.preconditionInEventLoop()
        channel = nil
        delayTimer?.cancel()
        delayTimer = nil
    }

    /// Drops everything and stops timers (the link is being closed for good).
    func clear() {
        detach()
        pending.removeAll()
        pendingBytes = 0
    }

    /// Drops the queued frames but keeps the connection (a partition began); returns how many.
    func discardPending() -> Int {
        loop.preconditionInEventLoop()
        let count = pending.count
        delayTimer?.cancel()
        delayTimer = nil
        pending.removeAll()
        pendingBytes = 0
        return count
    }

    /// Writes every frame that may leave now, in order.
    func drain() {
        loop.preconditionInEventLoop()
        guard let channel else { return }
        var now: NIODeadline?
        while let head = pending.first, channel.isWritable {
            if head.due.uptimeNanoseconds > 0 {
                let current = now ?? NIODeadline.now()
                now = current
                if head.due > current {
                    armDelayTimer(at: head.due)
                    return
                }
            }
            pending.removeFirst()
            pendingBytes -= head.frame.readableBytes
            counters.framesSent += 1
            counters.bytesSent += head.frame.readableBytes
            channel.write(head.frame, promise: nil)
            scheduleFlush()
        }
    }

    private func armDelayTimer(at deadline: NIODeadline) {
        guard delayTimer == nil else { return }
        let bound = NIOLoopBound(self, eventLoop: loop)
        delayTimer = loop.scheduleTask(deadline: deadline) {
            bound.value.delayTimer = nil
            bound.value.drain()
        }
    }

    private func scheduleFlush() {
        guard !flushScheduled else { return }
        flushScheduled = true
        let bound = NIOLoopBound(self, eventLoop: loop)
        loop.execute {
            let queue = bound.value
            queue.flushScheduled = false
            queue.channel?.flush()
        }
    }
}
