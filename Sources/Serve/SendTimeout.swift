import NIOCore
import NIOHTTPTypes

/// Disconnects a client that takes no bytes of an answer for `timeout`: a download that
/// stalls (a client that stopped reading but keeps its connection open) would otherwise hold the
/// repository's read lock for ever, and `gc` waits for every read lock.
///
/// One per connection, between the HTTP codec and Hummingbird's handlers. "Taking bytes" is a
/// write that reaches the socket (its promise succeeds); body parts are cut into slices of
/// ``sliceByteCount`` so that a slow client that keeps reading counts as taking bytes. Only
/// flushed writes count as waiting for the client: a server still working on an answer (a long
/// verification, an upload being read) is not the client's stall. Hummingbird's own idle
/// timeout does not cover this: it leaves a connection alone while an answer is being written.
final class SendTimeoutHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    /// The most bytes one write carries to the socket.
    static let sliceByteCount = 64 << 10

    private let timeout: TimeAmount
    /// Writes passed on and not flushed yet.
    private var unflushed = 0
    /// Flushed writes the socket has not taken yet.
    private var waiting = 0
    /// When a write last reached the socket (or the first of `waiting` was flushed).
    private var lastProgress = NIODeadline.now()
    private var check: Scheduled<Void>?

    init(timeout: TimeAmount) {
        self.timeout = timeout
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard case var .body(buffer) = unwrapOutboundIn(data), buffer.readableBytes > SendTimeoutHandler.sliceByteCount else {
            pass(context, data, promise: promise)
            return
        }
        while buffer.readableBytes > SendTimeoutHandler.sliceByteCount {
            let slice = buffer.readSlice(length: SendTimeoutHandler.sliceByteCount)!
            pass(context, wrapOutboundOut(.body(slice)), promise: nil)
        }
        // The caller's promise completes with the last slice: the socket took every byte before it.
        pass(context, wrapOutboundOut(.body(buffer)), promise: promise)
    }

    func flush(context: ChannelHandlerContext) {
        if waiting == 0, unflushed > 0 { lastProgress = .now() }
        waiting += unflushed
        unflushed = 0
        if waiting > 0 { schedule(context) }
        context.flush()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        check?.cancel()
        check = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        check?.cancel()
        check = nil
        context.fireChannelInactive()
    }

    /// Passes a write on, counting it until the socket takes it.
    private func pass(_ context: ChannelHandlerContext, _ data: NIOAny, promise: EventLoopPromise<Void>?) {
        let written = context.eventLoop.makePromise(of: Void.self)
        unflushed += 1
        written.futureResult.assumeIsolated().whenComplete { [self] result in
            // Writes complete in order, and only flushed ones succeed.
            if waiting > 0 { waiting -= 1 } else if unflushed > 0 { unflushed -= 1 }
            if case .success = result { lastProgress = .now() }
        }
        if let promise { written.futureResult.cascade(to: promise) }
        context.write(data, promise: written)
    }

    private func schedule(_ context: ChannelHandlerContext) {
        guard check == nil else { return }
        check = context.eventLoop.assumeIsolated().scheduleTask(deadline: lastProgress + timeout) { [self] in
            check = nil
            guard waiting > 0 else { return }
            if NIODeadline.now() >= lastProgress + timeout {
                // The client took nothing for `timeout`: the answer's writer fails, its read lock goes.
                context.close(promise: nil)
            } else {
                schedule(context)
            }
        }
    }
}
