import Logging
import SquaresProtocol
import Testing
@testable import SquaresServer

#if canImport(Glibc)
import Glibc
#endif

@Suite("Stdio transport over real pipes, in process")
struct StdioTransportTests {
    @Test("frames written to a pipe are served and the replies read back whole")
    func pipeRoundTrip() async throws {
        var input: [Int32] = [0, 0], output: [Int32] = [0, 0]
        #expect(pipe(&input) == 0 && pipe(&output) == 0)
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let inbox = FrameInbox()
        FrameReaderThread(descriptor: input[0], maxFrameBytes: 1 << 20, inbox: inbox, logger: logger).start()
        let writer = FrameWriterThread(descriptor: output[1], logger: logger)
        writer.start()
        let server = Server(configuration: ServerConfiguration(parallelism: 2), logger: logger)
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
