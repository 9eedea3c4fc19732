/// A JSON-RPC error object.
public struct RPCError: Error, Sendable, Equatable {
    var code: ErrorCode
    var message: String
    var data: JSONValue?

    public init(_ code: ErrorCode, message: String? = nil, data: JSONValue? = nil) {
        self.code = code
        self.message = message ?? code.defaultMessage
        self.data = data
    }

    var json: JSONValue {
        var members: [(key: String, value: JSONValue)] = [("code", .integer(code.rawValue)), ("message", .string(message))]
        if let data { members.append(("data", data)) }
        return .object(JSONObject(members))
    }

    public static func frameTooLarge(length: Int, limit: Int) -> RPCError {
        RPCError(.frameTooLarge, data: .object(["frameBytes": .integer(length), "maxFrameBytes": .integer(limit)]))
    }

    public static func invalidParams(_ reason: ParamsErrorReason, index: Int? = nil, detail: String) -> RPCError {
        let data: JSONValue = if let index {
            .object(["index": .integer(index), "reason": .string(reason.rawValue)])
        } else {
            .object(["reason": .string(reason.rawValue)])
        }
        return RPCError(.invalidParams, message: "Invalid params: \(detail)", data: data)
    }
}

/// A request or notification that passed JSON-RPC's structural checks.
public struct Request: Sendable {
    /// Absent for a notification; otherwise a string, a number or null.
    public var id: JSONValue?
    public var method: String
    /// An object or an array, when present.
    public var params: JSONValue?

    var isNotification: Bool { id == nil }
}

/// One element of what a frame carries: a request, or what made it invalid.
public enum Entry: Sendable {
    case request(Request)
    case invalid(id: JSONValue, error: RPCError)

    /// Applies JSON-RPC 2.0's rules for a request object.
    init(_ value: JSONValue) {
        guard case .object(let object) = value else {
            self = .invalid(id: .null, error: RPCError(.invalidRequest, message: "Invalid Request: not an object"))
            return
        }
        let id = object["id"]
        let idIsValid: Bool = switch id {
        case nil, .null?, .string?, .number?: true
        default: false
        }
        let replyID: JSONValue = idIsValid ? (id ?? .null) : .null
        func invalid(_ why: String) -> Entry {
            .invalid(id: replyID, error: RPCError(.invalidRequest, message: "Invalid Request: \(why)"))
        }
        guard case .string("2.0")? = object["jsonrpc"] else { self = invalid("\"jsonrpc\" must be \"2.0\""); return }
        guard idIsValid else { self = invalid("\"id\" must be a string, a number or null"); return }
        guard case .string(let method)? = object["method"] else { self = invalid("\"method\" must be a string"); return }
        let params = object["params"]
        switch params {
        case nil, .object?, .array?, .integers?: break
        default: self = invalid("\"params\" must be an object or an array"); return
        }
        self = .request(Request(id: id, method: method, params: params))
    }
}

/// What a frame holds once parsed.
public enum FrameContent: Sendable {
    case single(Entry)
    case batch([Entry])

    /// What `root`, a frame's value, holds.
    public init(_ root: JSONValue) {
        switch root {
        case .array(let elements) where !elements.isEmpty:
            self = .batch(elements.map(Entry.init))
        case .integers(let array) where array.count > 0:
            // A batch of numbers: each is an invalid request.
            let error = RPCError(.invalidRequest, message: "Invalid Request: not an object")
            self = .batch(Array(repeating: .invalid(id: .null, error: error), count: array.count))
        case .array, .integers:
            self = .single(.invalid(id: .null, error: RPCError(.invalidRequest, message: "Invalid Request: empty batch")))
        default:
            self = .single(Entry(root))
        }
    }
}

/// A reply's `result`: a JSON value, or JSON text already encoded in segments.
public enum ResultBody: Sendable {
    case value(JSONValue)
    case encoded([[UInt8]])
}

/// A response object.
public enum Response: Sendable {
    case success(id: JSONValue, result: ResultBody)
    case failure(id: JSONValue, error: RPCError)

    /// The response's JSON text as segments to be written in order.
    func segments() -> [[UInt8]] {
        var head = JSONWriter()
        head.append(raw: "{\"jsonrpc\":\"2.0\",\"id\":")
        switch self {
        case .success(let id, let result):
            head.write(id)
            head.append(raw: ",\"result\":")
            switch result {
            case .value(let value):
                head.write(value)
                head.append(raw: "}")
                return [head.bytes]
            case .encoded(let parts):
                return [head.bytes] + parts + [Array("}".utf8)]
            }
        case .failure(let id, let error):
            head.write(id)
            head.append(raw: ",\"error\":")
            head.write(error.json)
            head.append(raw: "}")
            return [head.bytes]
        }
    }
}

/// A frame to send: its body in segments, written back to back after the length header.
public struct OutboundFrame: Sendable {
    public var segments: [[UInt8]]

    init(segments: [[UInt8]]) { self.segments = segments }

    public init(_ response: Response) { segments = response.segments() }

    /// A batch reply: the responses as one JSON array.
    public init(batch responses: [Response]) {
        var segments: [[UInt8]] = [Array("[".utf8)]
        for (i, response) in responses.enumerated() {
            if i > 0 { segments.append(Array(",".utf8)) }
            segments.append(contentsOf: response.segments())
        }
        segments.append(Array("]".utf8))
        self.segments = segments
    }

    public var byteCount: Int { segments.reduce(0) { $0 + $1.count } }

    /// Header and body in one array (for tests and small frames).
    var bytes: [UInt8] { frameHeader(length: byteCount) + segments.joined() }
}
