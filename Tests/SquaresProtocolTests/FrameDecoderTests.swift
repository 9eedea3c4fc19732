import Testing
@testable import SquaresProtocol

/// Frames `bodies` with their length headers, glued together.
func stream(_ bodies: [[UInt8]]) -> [UInt8] {
    bodies.flatMap { frameHeader(length: $0.count) + $0 }
}

/// Feeds `bytes` to a decoder in the given chunk sizes (cycled) and collects what it emits.
func decode(_ bytes: [UInt8], chunks: [Int], limit: Int = 1 << 20) -> (events: [FrameEvent], decoder: FrameDecoder) {
    var decoder = FrameDecoder(maxFrameBytes: limit)
    var events: [FrameEvent] = []
    var offset = 0, chunk = 0
    while offset < bytes.count {
        let size = min(chunks[chunk % chunks.count], bytes.count - offset)
        decoder.feed(Array(bytes[offset..<offset + size])) { events.append($0) }
        offset += size
        chunk += 1
    }
    return (events, decoder)
}

func frames(_ bodies: [[UInt8]]) -> [FrameEvent] { bodies.map { .frame(FrameBytes($0)) } }

@Suite("Frame decoder")
struct FrameDecoderTests {
    let bodies: [[UInt8]] = [Array("{\"a\":1}".utf8), [], Array("[1,2,3]".utf8), [UInt8](repeating: 0x41, count: 1000)]

    @Test("frames glued together come out whole, in order, for any split", arguments: [[1], [2], [3], [5], [4096], [1, 7, 2], [999, 1]])
    func splits(chunks: [Int]) {
        let (events, decoder) = decode(stream(bodies), chunks: chunks)
        #expect(events == frames(bodies))
        #expect(decoder.isAtFrameBoundary)
    }

    @Test("random splits of many frames")
    func randomSplits() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<50 {
            let many = (0..<20).map { _ in (0..<Int.random(in: 0..<300, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) } }
            let chunks = (0..<10).map { _ in Int.random(in: 1...700, using: &generator) }
            #expect(decode(stream(many), chunks: chunks).events == frames(many))
        }
    }

    @Test("a zero-length frame is emitted as soon as its header is complete")
    func zeroLength() {
        var decoder = FrameDecoder(maxFrameBytes: 10)
        var events: [FrameEvent] = []
        decoder.feed([0, 0, 0, 0]) { events.append($0) }
        #expect(events == [.frame(FrameBytes([]))])
        #expect(decoder.isAtFrameBoundary)
    }

    @Test("an oversized frame is reported once, skipped, and the next frame is served", arguments: [[1], [3], [64], [100_000]])
    func oversizedSkip(chunks: [Int]) {
        let big = [UInt8](repeating: 0x5B, count: 5000)
        let small = Array("{}".utf8)
        let (events, decoder) = decode(stream([small, big, small]), chunks: chunks, limit: 4999)
        #expect(events == [.frame(FrameBytes(small)), .oversized(length: 5000), .frame(FrameBytes(small))])
        #expect(decoder.isAtFrameBoundary)
    }

    @Test("a frame of exactly the limit is accepted")
    func exactLimit() {
        let body = [UInt8](repeating: 0x20, count: 100)
        #expect(decode(stream([body]), chunks: [7], limit: 100).events == frames([body]))
    }

    @Test("a huge announced length is skipped without being allocated")
    func hugeHeader() {
        var decoder = FrameDecoder(maxFrameBytes: 1024)
        var events: [FrameEvent] = []
        decoder.feed([0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3]) { events.append($0) }
        #expect(events == [.oversized(length: 4_294_967_295)])
        #expect(!decoder.isAtFrameBoundary)
        #expect(decoder.positionDescription.contains("skipped"))
    }

    @Test("the position says where the input was cut")
    func truncation() {
        var decoder = FrameDecoder(maxFrameBytes: 100)
        decoder.feed([0, 0]) { _ in }
        #expect(!decoder.isAtFrameBoundary)
        #expect(decoder.positionDescription == "inside a frame header (2 of 4 bytes)")
        decoder.feed([0, 10, 1, 2, 3]) { _ in }
        #expect(decoder.positionDescription == "inside a frame body (3 of 10 bytes)")
        #expect(decoder.endOfInput() == .truncated(position: "inside a frame body (3 of 10 bytes)"))
    }

    @Test("the end of input between frames is no event; feed never reports a truncation")
    func cleanEnd() {
        var decoder = FrameDecoder(maxFrameBytes: 100)
        #expect(decoder.endOfInput() == nil)
        var events: [FrameEvent] = []
        decoder.feed([0, 0, 0, 2, 0x5B, 0x5D, 0, 0]) { events.append($0) }
        #expect(events == [.frame(FrameBytes(Array("[]".utf8)))])
        #expect(decoder.endOfInput() == .truncated(position: "inside a frame header (2 of 4 bytes)"))
        decoder.feed([0, 0]) { events.append($0) }
        #expect(events.count == 2 && decoder.endOfInput() == nil, "a zero-length frame, then a clean end")
    }

    @Test("the header is big-endian")
    func header() {
        #expect(frameHeader(length: 0x0102_0304) == [1, 2, 3, 4])
        #expect(frameHeader(length: 36) == [0, 0, 0, 36])
    }
}
