import SquaresProtocol
import SquaresCore

/// A one-shot signal that a request should stop: fired by `$/cancel`, awaited by the request.
final class CancellationSignal: Sendable {
    private enum State {
        case idle
        case waiting(CheckedContinuation<Void, Never>)
        case fired
    }

    private let state = Locked(State.idle)

    var isFired: Bool {
        state.withLock { if case .fired = $0 { true } else { false } }
    }

    func fire() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            defer { state = .fired }
            if case .waiting(let continuation) = state { return continuation }
            return nil
        }
        waiter?.resume()
    }

    /// Returns once the signal fires or the waiting task is cancelled. One waiter at a time.
    func wait() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let firedAlready = state.withLock { state -> Bool in
                    switch state {
                    case .idle: state = .waiting(continuation); return false
                    case .fired: return true
                    case .waiting: preconditionFailure("CancellationSignal has one waiter")
                    }
                }
                if firedAlready { continuation.resume() }
            }
        } onCancel: {
            fire()
        }
    }
}

/// The signals of the requests in flight, by id. Ids may repeat; `$/cancel` fires all of them.
final class CancellationRegistry: Sendable {
    private let signals = Locked<[String: [ObjectIdentifier: CancellationSignal]]>([:])

    /// A key under which equal ids meet: numbers by their text, strings by their value.
    static func key(_ id: JSONValue) -> String? {
        switch id {
        case .null: "null"
        case .number(let text): "n" + text
        case .string(let text): "s" + text
        default: nil
        }
    }

    func register(_ id: JSONValue) -> CancellationSignal {
        let signal = CancellationSignal()
        if let key = Self.key(id) {
            signals.withLock { $0[key, default: [:]][ObjectIdentifier(signal)] = signal }
        }
        return signal
    }

    func unregister(_ id: JSONValue, _ signal: CancellationSignal) {
        guard let key = Self.key(id) else { return }
        signals.withLock { table in
            table[key]?[ObjectIdentifier(signal)] = nil
            if table[key]?.isEmpty == true { table[key] = nil }
        }
    }

    func cancel(_ id: JSONValue) {
        guard let key = Self.key(id) else { return }
        let fired = signals.withLock { $0[key].map { Array($0.values) } ?? [] }
        for signal in fired { signal.fire() }
    }

    var count: Int { signals.withLock { $0.values.reduce(0) { $0 + $1.count } } }
}

/// Runs `work` unless `signal` fires first, in which case `work` is cancelled, awaited, and
/// `CancellationError` is thrown. Both sides are children of one task group.
func withCancellation<T: Sendable>(
    by signal: CancellationSignal,
    _ work: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await work() }
        group.addTask { await signal.wait(); return nil }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else { throw CancellationError() }
        return value
    }
}
