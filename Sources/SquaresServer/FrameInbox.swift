import Dispatch
import SquaresCore

/// The hand-off from the blocking reader thread to the serving loop: an `AsyncSequence` whose
/// producer blocks (on its own thread, never on the concurrency pool) while `capacity` events wait
/// unconsumed. The loop not pulling therefore stops the reads, and the pipe pushes back.
public final class FrameInbox: AsyncSequence, Sendable {
    public typealias Element = InboundEvent
    public typealias Failure = Never

    private struct State {
        var pending: [InboundEvent] = []
        var waiter: CheckedContinuation<InboundEvent?, Never>?
        var finished = false
    }

    private let state = Locked(State())
    private let space: DispatchSemaphore

    public init(capacity: Int = 1) {
        precondition(capacity >= 1)
        space = DispatchSemaphore(value: capacity)
    }

    /// Hands `event` to the loop, blocking the calling thread while the inbox is full. Call from a
    /// dedicated thread only.
    func put(_ event: InboundEvent) {
        space.wait()
        enum Outcome { case queued, dropped, handed(CheckedContinuation<InboundEvent?, Never>) }
        let outcome = state.withLock { state -> Outcome in
            if state.finished { return .dropped }
            if let waiter = state.waiter {
                state.waiter = nil
                return .handed(waiter)
            }
            state.pending.append(event)
            return .queued
        }
        switch outcome {
        case .queued: break
        case .dropped: space.signal()
        case .handed(let waiter):
            space.signal()
            waiter.resume(returning: event)
        }
    }

    /// True while the loop waits for input with nothing queued: every frame before this point has
    /// been taken, and the loop has not stopped reading. Only then may the producer answer a
    /// frame itself without reordering it against a `shutdown` or a full in-flight bound.
    var isLoopWaiting: Bool {
        state.withLock { $0.waiter != nil && $0.pending.isEmpty && !$0.finished }
    }

    /// Ends the sequence after the events already put; later `put`s are dropped. Safe from any
    /// thread (the stop-signal handler calls it).
    func finish() {
        let waiter = state.withLock { state -> CheckedContinuation<InboundEvent?, Never>? in
            state.finished = true
            guard state.pending.isEmpty else { return nil }
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: nil)
    }

    private func next() async -> InboundEvent? {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> InboundEvent?? in
                if !state.pending.isEmpty { return .some(state.pending.removeFirst()) }
                if state.finished { return .some(nil) }
                state.waiter = continuation
                return nil
            }
            if let ready {
                if ready != nil { space.signal() }
                continuation.resume(returning: ready)
            }
        }
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        let inbox: FrameInbox
        public mutating func next() async -> InboundEvent? { await inbox.next() }
        public mutating func next(isolation actor: isolated (any Actor)?) async -> InboundEvent? { await inbox.next() }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(inbox: self) }
}
