import SquaresProtocol

/// One RPC method: its name, how it reads its params, what reading it does to the server, and its
/// answer — at once when the work is small, else in a child task. Adding a method is one type
/// conforming to this and one line in `MethodRegistry.standard`; dispatch, `initialize`'s
/// `methods` and the choice between an answer at once and a child task all derive from those.
protocol RPCMethod: Sendable {
    associatedtype Params: Sendable

    /// The method name on the wire (case-sensitive).
    static var name: String { get }

    /// False for a method that must never be cancelled by `$/cancel` (`$/cancel` itself).
    static var isCancellable: Bool { get }

    /// Reads the request's params (absent, an object or an array). Integer arrays may still be
    /// pending (`JSONIntegerArray`); they are decoded before `answer` runs.
    /// - Throws: `RPCError` (-32602) for params this method does not take.
    func decode(_ params: JSONValue?) throws(RPCError) -> Params

    /// What the request does to the server as soon as it is read, in stream order.
    func effect(of params: Params) -> MethodEffect

    /// The answer, computed on the thread reading the frame, when it is cheap by
    /// `context.isImmediate`; nil leaves the request to `answer`.
    /// - Throws: `RPCError` for a request that fails at once.
    func immediateAnswer(_ params: Params, in context: MethodContext) throws(RPCError) -> ResultBody?

    /// True when the work has a result outside the reply (an shm request writes the client's
    /// segment): then a notification's work still runs, where otherwise it is dropped unread.
    func writesOutsideReply(_ params: Params) -> Bool

    /// The answer, in a child task of the serving loop; it stops when `signal` fires.
    /// - Throws: `RPCError`, or `CancellationError` once cancelled.
    func answer(_ params: Params, in context: MethodContext, signal: CancellationSignal) async throws -> ResultBody
}

extension RPCMethod {
    static var isCancellable: Bool { true }
    func effect(of params: Params) -> MethodEffect { .none }
    func immediateAnswer(_ params: Params, in context: MethodContext) throws(RPCError) -> ResultBody? { nil }
    func writesOutsideReply(_ params: Params) -> Bool { false }
}

/// What reading a request does before any request after it is read.
enum MethodEffect: Sendable {
    case none
    /// Stop reading; finish what is in flight; exit 0.
    case shutdown
    /// Cancel every request in flight with this id.
    case cancel(JSONValue)
    /// Take segments whose names start with this prefix (`initialize`'s `shmPrefix`).
    case armSharedMemory(prefix: String)
}

/// What a method may know about the server it runs in.
struct MethodContext: Sendable {
    var configuration: ServerConfiguration
    /// The methods served, in registry order (`initialize` lists them).
    var methodNames: [String]
    /// The shared-memory prefix armed by the last `initialize` that gave one (server state).
    var shmPrefix = ShmPrefix()

    /// The one size policy: a request whose work is under this many elements is answered at once
    /// by the frame's first phase, on the thread that read it; a bigger one becomes a child task,
    /// which can be cancelled and split across cores. 8,192 numbers take ~0.25 ms on one core
    /// (`make bench`: ~30 ns per number decoded, squared and encoded), short enough to hold the
    /// reader thread; not tuned beyond that.
    static let immediateElements = 8_192

    func isImmediate(elements: Int) -> Bool { elements < Self.immediateElements }
}

/// A request read and decoded, its effect known: answered already, or a job for the task group.
struct PreparedCall: Sendable {
    enum Outcome: Sendable {
        case answered(Result<ResultBody, RPCError>)
        case job(@Sendable (CancellationSignal) async throws -> ResultBody)
    }

    var effect: MethodEffect
    var isCancellable: Bool
    /// A notification's job runs all the same (`RPCMethod.writesOutsideReply`).
    var writesOutsideReply = false
    var outcome: Outcome
}

/// A method with its types erased, as the registry holds it.
struct RegisteredMethod: Sendable {
    let name: String
    let prepare: @Sendable (JSONValue?, MethodContext) -> PreparedCall

    init<Method: RPCMethod>(_ method: Method) {
        name = Method.name
        prepare = { params, context in
            let cancellable = Method.isCancellable
            let decoded: Method.Params
            do throws(RPCError) {
                decoded = try method.decode(params)
            } catch {
                return PreparedCall(effect: .none, isCancellable: cancellable, outcome: .answered(.failure(error)))
            }
            let effect = method.effect(of: decoded)
            do throws(RPCError) {
                if let body = try method.immediateAnswer(decoded, in: context) {
                    return PreparedCall(effect: effect, isCancellable: cancellable, outcome: .answered(.success(body)))
                }
            } catch {
                return PreparedCall(effect: effect, isCancellable: cancellable, outcome: .answered(.failure(error)))
            }
            return PreparedCall(effect: effect, isCancellable: cancellable, writesOutsideReply: method.writesOutsideReply(decoded), outcome: .job({ signal in
                try await method.answer(decoded, in: context, signal: signal)
            }))
        }
    }
}

/// The methods a server answers, by name, in one list.
struct MethodRegistry: Sendable {
    let methods: [RegisteredMethod]

    /// Every method of the product; `test/sleep` only when the worker runs with `--test-methods`.
    static func standard(testMethods: Bool) -> MethodRegistry {
        var methods = [
            RegisteredMethod(Initialize()),
            RegisteredMethod(CalculateSquares()),
            RegisteredMethod(Shutdown()),
            RegisteredMethod(CancelRequest()),
        ]
        if testMethods { methods.append(RegisteredMethod(TestSleep())) }
        return MethodRegistry(methods: methods)
    }

    var names: [String] { methods.map(\.name) }

    /// A handful of methods: a linear search beats hashing the name.
    subscript(name: String) -> RegisteredMethod? { methods.first { $0.name == name } }
}
