@testable import SquaresProtocol

/// The frame layer's invariants.
enum FrameChecks {
    /// Feeds `bytes` to a decoder in the given chunk sizes and collects its events.
    static func decode(_ bytes: [UInt8], chunks: [Int], maxFrameBytes: Int) -> (events: [FrameModel.Event], decoder: FrameDecoder) {
        var decoder = FrameDecoder(maxFrameBytes: maxFrameBytes)
        var events: [FrameModel.Event] = []
        var offset = 0
        bytes.withUnsafeBytes { all in
            for size in chunks {
                decoder.feed(UnsafeRawBufferPointer(rebasing: all[offset..<offset + size])) { events.append(.init($0)) }
                offset += size
            }
        }
        return (events, decoder)
    }

    /// The input as a byte stream: fed whole, in random pieces and (when short) one byte at a time,
    /// the decoder emits exactly the model's events and ends where the model ends. Returns the
    /// complete frames, for the message checks.
    static func checkStream(_ bytes: [UInt8], random: inout InputRandom) -> [[UInt8]] {
        let maxFrameBytes = [0, 1, 8, 64, 4096, 1 << 20].randomElement(using: &random)!
        let model = FrameModel.split(bytes, maxFrameBytes: maxFrameBytes)
        var splits = [[bytes.count], random.chunks(of: bytes.count)]
        if bytes.count <= 4096 { splits.append([Int](repeating: 1, count: bytes.count)) }
        for chunks in splits {
            let (events, decoder) = decode(bytes, chunks: chunks, maxFrameBytes: maxFrameBytes)
            require(events == model.events, "decoder events differ from the model for chunks \(chunks), limit \(maxFrameBytes): \(show(bytes))")
            require(decoder.isAtFrameBoundary == model.atBoundary, "decoder ends \(decoder.positionDescription), model at boundary: \(model.atBoundary)")
        }
        return model.events.compactMap { if case .frame(let body) = $0 { body } else { nil } }
    }

    /// The input as a frame body: framed twice back to back and split at random points, it comes out
    /// as exactly those two frames, and the decoder ends between frames.
    static func checkGlued(_ body: [UInt8], random: inout InputRandom) {
        let framed = frameHeader(length: body.count) + body
        let stream = framed + framed
        let (events, decoder) = decode(stream, chunks: random.chunks(of: stream.count), maxFrameBytes: body.count)
        require(events == [.frame(body), .frame(body)], "a framed body glued to itself did not decode to two frames")
        require(decoder.isAtFrameBoundary, "decoder not at a boundary after two whole frames")
    }
}
