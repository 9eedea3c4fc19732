import SquaresCore
@testable import SquaresProtocol

/// The integer-array codec's invariants, on any span its scanner accepts.
enum CodecChecks {
    /// Every `[` of `frame` (the first 16) whose text up to a `]` holds only integer-array bytes:
    /// sequential decode equals the model, and decoding in `parts` pieces in parallel equals the
    /// sequential decode (the same values, or a syntax error at the same offset).
    static func checkSpans(in frame: FrameBytes, parts: Int) async {
        let bytes = UnsafeBufferPointer(frame.storage)
        var opens = 0
        for open in bytes.indices where bytes[open] == UInt8(ascii: "[") {
            opens += 1
            if opens > 16 { break }
            guard let close = IntegerArrayCodec.scanIntegerArray(bytes, from: open + 1) else { continue }
            let span = open + 1..<close
            let model = IntegerArrayModel.decode(ArraySlice(bytes[span]))
            let sequential: Result<IntegerArray, IntegerSyntaxError>
            do { sequential = .success(try IntegerArrayCodec.decodeSequentially(bytes, span: span)) } catch { sequential = .failure(error) }
            let parallel: Result<IntegerArray, IntegerSyntaxError>
            do { parallel = .success(try await IntegerArrayCodec.decode(frame, span: span, parts: parts)) } catch { parallel = .failure(error) }
            switch (sequential, parallel) {
            case (.success(let one), .success(let many)):
                require(IntegerArrayModel.Outcome(one) == model, "codec \(IntegerArrayModel.Outcome(one)) but model \(model) for [\(show(bytes[span]))]")
                require(IntegerArrayModel.Outcome(many) == model, "\(parts) pieces: \(IntegerArrayModel.Outcome(many)) but model \(model) for [\(show(bytes[span]))]")
            case (.failure(let one), .failure(let many)):
                require(model == .syntaxError, "codec refused what the model decodes as \(model): [\(show(bytes[span]))]")
                require(one.offset == many.offset, "syntax error at \(one.offset) in one piece, at \(many.offset) in \(parts): [\(show(bytes[span]))]")
                require((0...span.count).contains(one.offset), "syntax error offset \(one.offset) outside a span of \(span.count)")
            default:
                require(false, "one piece: \(sequential), \(parts) pieces: \(parallel), for [\(show(bytes[span]))]")
            }
        }
    }

    /// Decoded numbers re-encode to the same numbers, and their squares encode exactly.
    static func checkRoundTrip(_ array: IntegerArray, parts: Int) async {
        let values = array.elements
        require(values.count == array.count, "a valid array of \(array.count) elements holds \(values.count) values")
        let text = "[" + values.map { String($0) }.joined(separator: ",") + "]"
        do {
            let again = try await JSONReader(parallelSpanBytes: 1).parse(Array(text.utf8), parallelism: parts)
            guard case .integers(let array) = again else { return require(false, "\(text) did not parse as an integer array") }
            require(array.elements == values, "\(text) decoded to other numbers")
        } catch {
            require(false, "the canonical text of decoded numbers does not parse: \(error)")
        }
        guard let segments = try? await IntegerArrayCodec.encode(array, mapping: Squaring.self, parallelism: parts) else {
            return require(false, "encoding squares failed without cancellation")
        }
        let expected = values.map { String(UInt64($0) * UInt64($0)) }.joined(separator: ",")
        require(segments.joined().elementsEqual(expected.utf8), "squares encode as \(show(segments.joined())), not \(expected)")
    }
}
