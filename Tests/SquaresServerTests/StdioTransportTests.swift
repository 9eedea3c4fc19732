import Dispatch
import Logging
@testable import SquaresProtocol
import SystemPackage
import Testing
@testable import SquaresServer

#if canImport(Glibc)
import Glibc
#endif

/// A worker's stdio wiring on two pipes, in process: returns the write end of its input, the read
/// end of its output and the serving task.
func startPipeWorker(
    inline: Bool, configuration: ServerConfiguration = ServerConfiguration(parallelism: 2)
) -> (input: Int32, output: Int32, run: Task<ServerExitStatus, Never>, reader: FrameReader) {
    var input: [Int32] = [0, 0], output: [Int32] = [0, 0]
    precondition(pipe(&input) == 0 && pipe(&output) == 0)
    var logger = Logger(label: "test")
    logger.logLevel = .critical
    let inbox = FrameInbox()
    let writer = FrameWriter(output: FileDescriptor(rawValue: output[1]), logger: logger)
    let server = Server(configuration: configuration, logger: logger)
    let reader = try! FrameReader(
        input: FileDescriptor(rawValue: input[0]), maxFrameBytes: configuration.maxFrameBytes, server: server, writer: writer,
        inbox: inbox, answersSmallFrames: inline, logger: logger)
    reader.start()
    let (readEnd, writeEnd) = (input[0], output[1])
    let run = Task {
        let status = await server.run(inbox, writer: writer)
        close(writeEnd)
        _ = readEnd
        return status
    }
    return (input[1], output[0], run, reader)
}

/// The next frame's body read from `descriptor`, as text: read on a thread of its own, so that the
/// blocking reads never hold a thread of the concurrency pool, which the worker needs meanwhile.
func readOneFrame(_ descriptor: Int32) async -> String? {
    await withCheckedContinuation { continuation in
        DispatchQueue(label: "read-one-frame").async {
            var decoder = FrameDecoder(maxFrameBytes: 1 << 24)
            var byte: UInt8 = 0
            var frame: String?
            while frame == nil, read(descriptor, &byte, 1) == 1 {
                decoder.feed([byte]) { if case .frame(let body) = $0 { frame = String(decoding: body.storage, as: UTF8.self) } }
            }
            continuation.resume(returning: frame)
        }
    }
}

/// Every frame that can be read from `descriptor` until its end.
func readFrames(_ descriptor: Int32) -> (texts: [String], clean: Bool) {
    var events: [FrameEvent] = []
    var decoder = FrameDecoder(maxFrameBytes: 1 << 24)
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        decoder.feed(Array(buffer[0..<n])) { events.append($0) }
    }
    close(descriptor)
    let texts = events.compactMap { event -> String? in
        guard case .frame(let body) = event else { return nil }
        return String(decoding: body.storage, as: UTF8.self)
    }
    return (texts, decoder.isAtFrameBoundary)
}

func framed(_ texts: [String]) -> [UInt8] {
    texts.flatMap { text in frameHeader(length: text.utf8.count) + Array(text.utf8) }
}

@Suite("Stdio transport over real pipes, in process")
struct StdioTransportTests {
    @Test("with small frames answered by the reader thread or not, every small call is answered and nothing after shutdown is served", arguments: [false, true])
    func inlineOrdering(inline: Bool) async {
        let worker = startPipeWorker(inline: inline)
        var texts = (1...200).map { request($0, "calculate_squares", "[[\($0)]]") }
        texts.append(request(1000, "shutdown"))
        texts += (2000..<2050).map { request($0, "calculate_squares", "[[\($0)]]") }
        let bytes = framed(texts)
        let writer = Task.detached { bytes.withUnsafeBytes { write(worker.input, $0.baseAddress, $0.count) } }
        #expect(await worker.run.value == .success)
        let (replies, clean) = readFrames(worker.output)
        _ = await writer.value
        close(worker.input)
        #expect(clean)
        #expect(replies.count == 201)
        for id in 1...200 {
            #expect(replies.contains(#"{"jsonrpc":"2.0","id":\#(id),"result":[\#(id * id)]}"#))
        }
        #expect(replies.contains(#"{"jsonrpc":"2.0","id":1000,"result":null}"#))
        for id in 2000..<2050 {
            #expect(!replies.contains { $0.contains(#""id":\#(id),"#) }, "id \(id) came after shutdown")
        }
    }

    @Test("a stop request ends the reading: the request in flight is answered; a frame half read makes it a truncated input",
          .timeLimit(.minutes(1)), arguments: [false, true])
    func stopRequest(halfAFrame: Bool) async throws {
        let worker = startPipeWorker(inline: true, configuration: ServerConfiguration(parallelism: 2, testMethods: true))
        // One write of under 4 KiB (PIPE_BUF), so the reader takes it in one read: the sleep, a
        // quick call whose reply says the reader got this far, and maybe the start of a frame.
        var bytes = framed([request(1, "test/sleep", #"{"ms":300}"#), request(2, "calculate_squares", "[[2]]")])
        if halfAFrame { bytes += [0, 0, 0, 50, UInt8(ascii: "{")] }
        #expect(bytes.withUnsafeBytes { write(worker.input, $0.baseAddress, $0.count) } == bytes.count)
        #expect(await readOneFrame(worker.output) == #"{"jsonrpc":"2.0","id":2,"result":[4]}"#)
        worker.reader.requestStop(signal: SIGTERM)
        #expect(await worker.run.value == (halfAFrame ? .truncatedInput : .success))
        let (replies, clean) = readFrames(worker.output)
        close(worker.input)
        #expect(clean)
        #expect(replies == [#"{"jsonrpc":"2.0","id":1,"result":null}"#], "the sleep in flight is answered after the stop")
    }

    @Test("frames written to a pipe are served and the replies read back whole")
    func pipeRoundTrip() async throws {
        var input: [Int32] = [0, 0], output: [Int32] = [0, 0]
        #expect(pipe(&input) == 0 && pipe(&output) == 0)
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let inbox = FrameInbox()
        let writer = FrameWriter(output: FileDescriptor(rawValue: output[1]), logger: logger)
        let server = Server(configuration: ServerConfiguration(parallelism: 2), logger: logger)
        try FrameReader(
            input: FileDescriptor(rawValue: input[0]), maxFrameBytes: 1 << 20, server: server, writer: writer, inbox: inbox, logger: logger
        ).start()
        let run = Task { await server.run(inbox, writer: writer) }

        var bytes: [UInt8] = []
        for id in 1...50 {
            let body = Array(request(id, "calculate_squares", "[[\(id), 65536]]").utf8)
            bytes += frameHeader(length: body.count) + body
        }
        bytes += frameHeader(length: 1 << 21) + [1, 2, 3]  // oversized, then cut off
        let written = bytes.withUnsafeBytes { write(input[1], $0.baseAddress, $0.count) }
        #expect(written == bytes.count)
        close(input[1])
        #expect(await run.value == .truncatedInput)
        close(output[1])

        var replies: [FrameEvent] = []
        var decoder = FrameDecoder(maxFrameBytes: 1 << 20)
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(output[0], $0.baseAddress, $0.count) }
            if n <= 0 { break }
            decoder.feed(Array(buffer[0..<n])) { replies.append($0) }
        }
        close(output[0]); close(input[0])
        #expect(decoder.isAtFrameBoundary)
        #expect(replies.count == 51)
        let texts = replies.compactMap { event -> String? in
            guard case .frame(let body) = event else { return nil }
            return String(decoding: body.storage, as: UTF8.self)
        }
        for id in 1...50 {
            #expect(texts.contains(#"{"jsonrpc":"2.0","id":\#(id),"result":[\#(id * id),4294967296]}"#))
        }
        #expect(texts.contains { $0.contains(#""frameBytes":2097152"#) })
    }
}
