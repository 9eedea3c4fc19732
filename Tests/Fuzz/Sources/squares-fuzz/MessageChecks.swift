import Logging
import SquaresCore
@testable import SquaresProtocol
@testable import SquaresServer

/// The invariants of one frame body, from JSON text to the reply the worker writes.
enum MessageChecks {
    static func parse(_ frame: FrameBytes, parts: Int) async -> Result<JSONValue, JSONParseError> {
        // parallelSpanBytes 1: every integer array is decoded in parallel pieces, then put in place.
        do { return .success(try await JSONReader(parallelSpanBytes: 1).parse(frame, parallelism: parts)) } catch { return .failure(error) }
    }

    /// The two servers one input's frames are served by, with one core and with `parts`, made
    /// fresh for each input (as a worker process is for each connection): a server keeps state
    /// between frames (initialize's shmPrefix, a shutdown), so both must see the same frames in
    /// the same order — those of this input, never an earlier input's — for their replies to be
    /// comparable, and for an artifact to replay alone.
    struct Servers {
        let one: Server
        let many: Server
        let parts: Int

        init(parts: Int) {
            var logger = Logger(label: "fuzz")
            logger.logLevel = .critical
            one = Server(configuration: ServerConfiguration(parallelism: 1), logger: logger)
            many = Server(configuration: ServerConfiguration(parallelism: parts), logger: logger)
            self.parts = parts
        }
    }

    static func check(_ body: [UInt8], servers: Servers) async {
        let parts = servers.parts
        let frame = FrameBytes(body)
        await CodecChecks.checkSpans(in: frame, parts: parts)
        let sequential = await parse(frame, parts: 1)
        let parallel = await parse(frame, parts: parts)
        let parsed: JSONValue
        switch (sequential, parallel) {
        case (.success(let one), .success(let many)):
            require(one == many, "the root differs between one piece and \(parts): \(show(body))")
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
        await checkRequests(parsed, servers: servers, body: body)
    }

    /// Written back and parsed again, a frame writes the same text: the writer escapes what the
    /// reader needs escaped and keeps numbers exact. (Arrays with a bad element keep no values, so
    /// those frames are skipped.)
    static func checkWriterFixedPoint(_ parsed: JSONValue) async {
        guard !hasBadElement(parsed) else { return }
        var first = JSONWriter()
        first.write(parsed)
        guard case .success(let again) = await parse(FrameBytes(first.bytes), parts: 1) else {
            return require(false, "the writer's text does not parse: \(show(first.bytes))")
        }
        var second = JSONWriter()
        second.write(again)
        require(first.bytes == second.bytes, "write(parse(write(x))) differs: \(show(first.bytes)) then \(show(second.bytes))")
    }

    /// The server's own `prepare` and reply answer the frame the same with one core and with
    /// `parts`, and the reply is JSON-RPC that parses: one response per entry that gets one.
    /// Decoded integer arrays round-trip, and valid packed params decode as the model.
    static func checkRequests(_ parsed: JSONValue, servers: Servers, body: [UInt8]) async {
        let parts = servers.parts
        let (entries, isBatch): ([Entry], Bool) = switch FrameContent(parsed) {
        case .single(let entry): ([entry], false)
        case .batch(let entries): (entries, true)
        }
        var expected = 0
        for entry in entries {
            switch entry {
            case .invalid: expected += 1
            case .request(let request):
                if request.id != nil { expected += 1 }
                guard case .object(let params)? = request.params else { continue }
                if case .integers(let array)? = params["numbers"], array.firstProblem == nil {
                    await CodecChecks.checkRoundTrip(array, parts: parts)
                }
                if case .string(let text)? = params["numbersPacked"] { await PackedChecks.check(text, parts: parts) }
            }
        }
        let one = await serve(body, by: servers.one)
        // `initialize` reports the parallelism: the one byte string in which the two may differ.
        let many = await serve(body, by: servers.many).map { reply in
            Array(String(decoding: reply, as: UTF8.self).replacing("\"parallelism\":\(parts)", with: "\"parallelism\":1").utf8)
        }
        require(one == many, "the reply with one core differs from the one with \(parts): \(show(one ?? [])) and \(show(many ?? []))")
        guard let reply = one else {
            return require(expected == 0, "no reply for a frame with \(expected) entries to answer: \(show(body))")
        }
        guard case .success(let echo) = await parse(FrameBytes(reply), parts: 1) else {
            return require(false, "the reply is not JSON: \(show(reply))")
        }
        let objects: [JSONValue] = switch echo {
        case .array(let items) where isBatch: items
        case .object where !isBatch: [echo]
        default: []
        }
        require(objects.count == expected, "the reply holds \(objects.count) responses, not \(expected): \(show(reply))")
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

    /// The reply body `server` writes for `body`, if any.
    static func serve(_ body: [UInt8], by server: Server) async -> [UInt8]? {
        guard let respond = await server.prepare(.frame(FrameBytes(body))).respond, let frame = await respond() else { return nil }
        let bytes = frame.bytes
        require(bytes.count == frame.byteCount + 4 && bytes.prefix(4).elementsEqual(frameHeader(length: frame.byteCount)), "a reply's header does not give its length")
        return Array(bytes.dropFirst(4))
    }
}

/// True when an integer array in `value` has an element that is not a valid `UInt32`.
func hasBadElement(_ value: JSONValue) -> Bool {
    switch value {
    case .integers(let array): array.firstProblem != nil
    case .array(let elements): elements.contains(where: hasBadElement)
    case .object(let object): object.members.contains { hasBadElement($0.value) }
    default: false
    }
}

extension Result {
    var isSuccess: Bool { if case .success = self { true } else { false } }
}
