import SquaresCore
import SquaresProtocol

/// The invariants of one frame body, from JSON text to the reply the worker would write.
enum MessageChecks {
    static func parse(_ frame: FrameBytes, parts: Int) async -> Result<ParsedFrame, JSONParseError> {
        // parallelSpanBytes 1: every integer array takes the deferred, parallel path.
        let reader = parts == 1 ? JSONReader(parallelism: 1) : JSONReader(parallelism: parts, parallelSpanBytes: 1)
        do { return .success(try await reader.parse(frame)) } catch { return .failure(error) }
    }

    static func check(_ body: [UInt8], parts: Int) async {
        let frame = FrameBytes(body)
        await CodecChecks.checkSpans(in: frame, parts: parts)
        let sequential = await parse(frame, parts: 1)
        let parallel = await parse(frame, parts: parts)
        let parsed: ParsedFrame
        switch (sequential, parallel) {
        case (.success(let one), .success(let many)):
            require(one.root == many.root, "the root differs between one piece and \(parts): \(show(body))")
            require(one.integerArrays.map(IntegerArrayModel.Outcome.init) == many.integerArrays.map(IntegerArrayModel.Outcome.init),
                    "integer arrays differ between one piece and \(parts): \(show(body))")
            parsed = one
        case (.failure(let error), .failure):
            require((0...body.count).contains(error.offset), "parse error offset \(error.offset) outside a frame of \(body.count)")
            let reply = OutboundFrame(.failure(id: .null, error: RPCError(.parseError, message: "Parse error: \(error.description)")))
            require(await parse(FrameBytes(reply.segments.joined()), parts: 1).isSuccess, "the parse error reply is not JSON")
            return
        default:
            return require(false, "one piece: \(sequential), \(parts) pieces: \(parallel), for \(show(body))")
        }
        await checkWriterFixedPoint(parsed)
        await checkRequests(parsed, parts: parts)
    }

    /// Written back and parsed again, a frame writes the same text: the writer escapes what the
    /// reader needs escaped and keeps numbers exact. (Arrays with a bad element keep no values, so
    /// those frames are skipped.)
    static func checkWriterFixedPoint(_ parsed: ParsedFrame) async {
        guard parsed.integerArrays.allSatisfy({ $0.firstProblem == nil }) else { return }
        var first = JSONWriter()
        first.write(parsed.root, integerArrays: parsed.integerArrays)
        guard case .success(let again) = await parse(FrameBytes(first.bytes), parts: 1) else {
            return require(false, "the writer's text does not parse: \(show(first.bytes))")
        }
        var second = JSONWriter()
        second.write(again.root, integerArrays: again.integerArrays)
        require(first.bytes == second.bytes, "write(parse(write(x))) differs: \(show(first.bytes)) then \(show(second.bytes))")
    }

    /// Each request's params read the same way through `squaresInput` and `numbers`, the numbers
    /// round-trip, and the frame's reply, built as the server builds it, is JSON-RPC that parses.
    static func checkRequests(_ parsed: ParsedFrame, parts: Int) async {
        let content = FrameContent(parsed)
        let (entries, isBatch): ([Entry], Bool) = switch content {
        case .single(let entry): ([entry], false)
        case .batch(let entries): (entries, true)
        }
        var responses: [Response] = []
        for entry in entries {
            switch entry {
            case .invalid(let id, let error):
                responses.append(.failure(id: id, error: error))
            case .request(let request):
                let numbers = parsed.numbers(in: request.params)
                let input = parsed.squaresInput(in: request.params)
                if case .success(.json(let array)) = input {
                    require(numbers == .success(array), "squaresInput and numbers read different arrays")
                }
                if case .success(.packed(let text)) = input {
                    await PackedChecks.check(text, parts: parts)
                }
                if case .success(let array) = numbers {
                    await CodecChecks.checkRoundTrip(array, parts: parts)
                }
                guard let id = request.id else { continue }  // a notification: no reply
                switch numbers {
                case .success(let array):
                    let segments = (try? await IntegerArrayCodec.encodeSquares(of: array, parallelism: parts)) ?? []
                    responses.append(.success(id: id, result: .encoded([Array("[".utf8)] + segments + [Array("]".utf8)])))
                case .failure(let error):
                    responses.append(.failure(id: id, error: error))
                }
            }
        }
        guard !responses.isEmpty else { return }
        let reply = isBatch ? OutboundFrame(batch: responses) : OutboundFrame(responses[0])
        let bytes = reply.bytes
        require(bytes.count == reply.byteCount + 4 && bytes.prefix(4).elementsEqual(frameHeader(length: reply.byteCount)), "a reply's header does not give its length")
        guard case .success(let echo) = await parse(FrameBytes(Array(bytes.dropFirst(4))), parts: 1) else {
            return require(false, "the reply is not JSON: \(show(bytes.dropFirst(4)))")
        }
        let objects: [JSONValue] = switch echo.root {
        case .array(let items) where isBatch: items
        case .object where !isBatch: [echo.root]
        default: []
        }
        require(objects.count == responses.count, "the reply holds \(objects.count) responses, not \(responses.count)")
        for object in objects {
            guard case .object(let members) = object else { return require(false, "a response is not an object") }
            require(members["jsonrpc"] == .string("2.0"), "a response without \"jsonrpc\": \"2.0\"")
            require((members["result"] == nil) != (members["error"] == nil), "a response needs exactly one of result and error")
            switch members["id"] {
            case .null?, .string?, .number?: break
            default: require(false, "a response id is not null, a string or a number")
            }
        }
    }
}

extension Result {
    var isSuccess: Bool { if case .success = self { true } else { false } }
}
