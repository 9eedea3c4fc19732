import SquaresProtocol

/// One RPC method: its name, how it reads its params, what reading it does to the server, how much
/// work it is, and its result, computed in one body. Adding a method is one type conforming to
/// this and one line in `MethodRegistry.standard`; dispatch, `initialize`'s `methods`, and the
/// choice between answering on the reader thread and in a child task all derive from those.
protocol RPCMethod: Sendable {
    associatedtype Params: Sendable

    /// The method name on the wire (case-sensitive).
    static var name: String { get }

    /// False for a method that must never be cancelled by `$/cancel` (`$/cancel` itself).
    static var isCancellable: Bool { get }

    /// Reads the request's params (absent, an object or an array), in stream order: `context`
    /// holds the server state that the requests read before this one left.
    /// - Throws: `RPCError` (-32602) for params this method does not take.
    func decode(_ params: JSONValue?, in context: MethodContext) throws(RPCError) -> Params

    /// What the request does to the server as soon as it is read, in stream order.
    func effect(of params: Params) -> MethodEffect

    /// The elements of work the request is: the server answers a frame whose requests are all
    /// under `MethodContext.inlineWorkLimit` on the thread that read it.
    func workSize(of params: Params) -> Int

    /// True when the request has an effect outside its reply (an shm request writes the client's
    /// segment): then a notification is still computed, where otherwise it is dropped unread.
    func hasSideEffects(_ params: Params) -> Bool

    /// The result. Parallel inside when the work is big (the codecs and `ParallelMap` run small
    /// inputs inline); whether it runs on the reader thread or in a child task, and whether it can
    /// be cancelled, is the server's business.
    /// - Throws: `RPCError`, or `CancellationError` once cancelled.
    func compute(_ params: Params, in context: MethodContext) async throws -> ResultBody
}

extension RPCMethod {
    static var isCancellable: Bool { true }
    func effect(of params: Params) -> MethodEffect { .none }
    func workSize(of params: Params) -> Int { 0 }
    func hasSideEffects(_ params: Params) -> Bool { false }
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

    /// The one size policy: a frame whose requests are each under this many elements is answered
    /// by the reader thread as soon as it is read (while the serving loop is idle); a bigger one
    /// runs in a child task, which can be cancelled and split across cores. 8,192 numbers take
    /// ~0.25 ms on one core (`make bench`: ~30 ns per number decoded, squared and encoded), short
    /// enough to hold the reader thread; not tuned beyond that.
    static let inlineWorkLimit = 8_192
}

/// A request decoded and bound to its method, its effect known, its result still to compute.
struct Call: Sendable {
    var effect: MethodEffect
    var isCancellable: Bool
    var hasSideEffects: Bool
    var workSize: Int
    var compute: @Sendable () async throws -> ResultBody
}

/// A method with its types erased, as the registry holds it.
struct RegisteredMethod: Sendable {
    let name: String
    /// Decodes a request's params into a call, or the error it is answered with.
    let call: @Sendable (JSONValue?, MethodContext) -> Result<Call, RPCError>

    init<Method: RPCMethod>(_ method: Method) {
        name = Method.name
        call = { params, context in
            do throws(RPCError) {
                let decoded = try method.decode(params, in: context)
                return .success(Call(
                    effect: method.effect(of: decoded), isCancellable: Method.isCancellable,
                    hasSideEffects: method.hasSideEffects(decoded), workSize: method.workSize(of: decoded),
                    compute: { try await method.compute(decoded, in: context) }))
            } catch {
                return .failure(error)
            }
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
