import SquaresProtocol

/// `initialize`: what the worker is and the limits it runs with. Params: absent or an object;
/// its `shmPrefix` (1.2), when given, arms the shared-memory plane for segments of that prefix
/// (the last valid one wins); other members are ignored.
struct Initialize: RPCMethod {
    static let name = "initialize"

    func decode(_ params: JSONValue?, in context: MethodContext) throws(RPCError) -> String? {
        switch params {
        case nil: return nil
        case .object(let object)?:
            guard let offer = object["shmPrefix"] else { return nil }
            guard case .string(let prefix) = offer, SharedMemory.isValidName(prefix, maxLength: SharedMemory.maxPrefixLength) else {
                throw SharedMemory.invalid("shmPrefix is not 1 to \(SharedMemory.maxPrefixLength) characters of [A-Za-z0-9_.-]")
            }
            return prefix
        default: throw RPCError.invalidParams(.invalidShape, detail: "initialize takes an object")
        }
    }

    func effect(of prefix: String?) -> MethodEffect { prefix.map { .armSharedMemory(prefix: $0) } ?? .none }

    func compute(_ params: String?, in context: MethodContext) -> ResultBody {
        let configuration = context.configuration
        return .value(.object([
            "protocolVersion": .string(ProtocolConstants.protocolVersion),
            "serverInfo": .object(["name": .string(ProtocolConstants.workerName), "version": .string(ProtocolConstants.workerVersion)]),
            "methods": .array(context.methodNames.map(JSONValue.string)),
            "limits": .object([
                "maxFrameBytes": .integer(configuration.maxFrameBytes),
                "maxInFlight": .integer(configuration.maxInFlight),
                "maxNumber": .integer(ProtocolConstants.maxNumber),
            ]),
            "parallelism": .integer(configuration.parallelism),
            "encodings": .array(ProtocolConstants.encodings.filter { $0 != "shm" || configuration.sharedMemory }.map(JSONValue.string)),
        ]))
    }

}

/// `shutdown`: answered null; the worker stops reading, finishes what is in flight and exits 0.
/// Params: absent, `{}` or `[]`.
struct Shutdown: RPCMethod {
    static let name = "shutdown"

    func decode(_ params: JSONValue?, in context: MethodContext) throws(RPCError) {
        let isEmpty = switch params {
        case nil: true
        case .object(let object)?: object.members.isEmpty
        case .array(let elements)?: elements.isEmpty
        case .integers(let array)?: array.count == 0
        default: false
        }
        guard isEmpty else { throw RPCError.invalidParams(.invalidShape, detail: "shutdown takes no params") }
    }

    func effect(of params: Void) -> MethodEffect { .shutdown }

    func compute(_ params: Void, in context: MethodContext) -> ResultBody { .value(.null) }
}

/// `$/cancel` `{"id": X}`: cancels the requests with id X read before it. Never fails: params
/// without an `id` cancel nothing; as a request it is answered null, and is never cancelled.
struct CancelRequest: RPCMethod {
    static let name = "$/cancel"
    static let isCancellable = false

    func decode(_ params: JSONValue?, in context: MethodContext) throws(RPCError) -> JSONValue? {
        if case .object(let object)? = params { return object["id"] }
        return nil
    }

    func effect(of target: JSONValue?) -> MethodEffect { target.map(MethodEffect.cancel) ?? .none }

    func compute(_ params: JSONValue?, in context: MethodContext) -> ResultBody { .value(.null) }
}

/// `test/sleep` `{"ms": N}`: null after N milliseconds, cancellable. Registered only with
/// `--test-methods`, for deterministic tests of ordering, cancellation and backpressure.
struct TestSleep: RPCMethod {
    static let name = "test/sleep"
    /// The longest sleep accepted, in milliseconds.
    static let maxMilliseconds = 60_000

    func decode(_ params: JSONValue?, in context: MethodContext) throws(RPCError) -> Int {
        guard case .object(let object)? = params, case .number(let text)? = object["ms"],
              let value = Int(text), (0...Self.maxMilliseconds).contains(value)
        else {
            throw RPCError.invalidParams(.invalidShape, detail: "expected {\"ms\": 0...\(Self.maxMilliseconds)}")
        }
        return value
    }

    /// It waits: never on the reader thread.
    func workSize(of milliseconds: Int) -> Int { .max }

    func compute(_ milliseconds: Int, in context: MethodContext) async throws -> ResultBody {
        try await Task.sleep(for: .milliseconds(milliseconds))
        return .value(.null)
    }
}
