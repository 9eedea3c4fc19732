import ArgumentParser
import Logging
import NIOCore
import NIOPosix
import SquaresProtocol
import SquaresServer

#if canImport(Glibc)
import Glibc
#endif

/// `FrameDecoder` as a `ByteToMessageDecoder`: NIOExtras' `LengthFieldBasedFrameDecoder` throws on
/// a frame over the limit, and the contract skips it instead.
struct FrameEventDecoder: ByteToMessageDecoder {
    typealias InboundOut = FrameEvent
    var decoder: FrameDecoder

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        var events: [FrameEvent] = []
        buffer.withUnsafeReadableBytes { bytes in decoder.feed(bytes) { events.append($0) } }
        buffer.moveReaderIndex(to: buffer.writerIndex)
        for event in events { context.fireChannelRead(wrapInboundOut(event)) }
        return .needMoreData
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        _ = try decode(context: context, buffer: &buffer)
        if seenEOF, let truncated = decoder.endOfInput() { context.fireChannelRead(wrapInboundOut(truncated)) }
        return .needMoreData
    }
}

/// Replies go to the channel's outbound writer, header and segments in one `write(contentsOf:)`.
struct ChannelReplyWriter: ReplyWriter {
    let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    let allocator = ByteBufferAllocator()

    func write(_ frame: OutboundFrame) async {
        var buffer = allocator.buffer(capacity: 4 + frame.byteCount)
        buffer.writeBytes(frameHeader(length: frame.byteCount))
        for segment in frame.segments { buffer.writeBytes(segment) }
        try? await outbound.write(buffer)
    }
}

/// The inbound frames as the serving loop takes them: prepared in order, ending at the first error.
struct PreparedFrames: AsyncSequence, Sendable {
    typealias Element = PendingReply
    typealias Failure = Never
    let inbound: NIOAsyncChannelInboundStream<FrameEvent>
    let server: Server

    struct AsyncIterator: AsyncIteratorProtocol {
        var events: NIOAsyncChannelInboundStream<FrameEvent>.AsyncIterator
        let server: Server
        mutating func next() async -> PendingReply? {
            guard let event = try? await events.next() else { return nil }
            return await server.prepare(event)
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(events: inbound.makeAsyncIterator(), server: server) }
}

/// The same command line as the worker's (the options the measurements use), so that the two
/// binaries carry the same parser and differ by their transport only.
@main
struct SquaresWorkerNIO: AsyncParsableCommand {
    @Option var parallelism: Int?
    @Option var maxInFlight: Int = ProtocolConstants.defaultMaxInFlight
    @Option var maxFrameBytes: Int = ProtocolConstants.defaultMaxFrameBytes
    @Option var logLevel: String = "warning"
    @Flag var testMethods = false

    func run() async throws {
        // As the worker does: 1 MiB pipe buffers (F_SETPIPE_SZ, Linux), so that the big calls compare fairly.
        #if os(Linux)
        for descriptor: Int32 in [0, 1] { _ = fcntl(descriptor, 1031, Int32(1 << 20)) }
        #endif
        signal(SIGPIPE, SIG_IGN)
        var logger = Logger(label: "squares-worker-nio")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .warning
        let configuration = ServerConfiguration(
            parallelism: parallelism ?? System.coreCount, maxInFlight: maxInFlight, maxFrameBytes: maxFrameBytes,
            testMethods: testMethods)
        let server = Server(configuration: configuration, logger: logger)
        // Half-closure: the end of stdin ends the input, not the output, whose replies are still due.
        let channel = try await NIOPipeBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .takingOwnershipOfDescriptors(input: 0, output: 1) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(FrameEventDecoder(decoder: FrameDecoder(maxFrameBytes: configuration.maxFrameBytes))))
                    return try NIOAsyncChannel<FrameEvent, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        let status = try await channel.executeThenClose { inbound, outbound in
            await server.run(PreparedFrames(inbound: inbound, server: server), writer: ChannelReplyWriter(outbound: outbound))
        }
        Glibc.exit(status.rawValue)
    }
}
