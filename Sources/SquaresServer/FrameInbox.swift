import Dispatch
import SquaresCore

/// The hand-off from the blocking reader thread to the serving loop: an `AsyncSequence` whose
/// producer blocks (on its own thread, never on the concurrency pool) while `capacity` frames wait
/// unconsumed. The loop not pulling therefore stops the reads, and the pipe pushes back.
public final class FrameInbox: AsyncSequence, Sendable {
    public typealias Element = PendingReply
    public typealias Failure = Never

    private struct State {
        var queued: [PendingReply] = []
        var waiter: CheckedContinuation<PendingReply?, Never>?
        var finished = false
    }

    private let state = Locked(State())
    private let space: DispatchSemaphore

    public init(capacity: Int = 1) {
        precondition(capacity >= 1)
        space = DispatchSemaphore(value: capacity)
    }

    /// Hands `frame` to the loop, blocking the calling thread while the inbox is full. Call from a
    /// dedicated thread only.
    func put(_ frame: PendingReply) {
        space.wait()
        enum Outcome { case queued, dropped, handed(CheckedContinuation<PendingReply?, Never>) }
        let outcome = state.withLock { state -> Outcome in
            if state.finished { return .dropped }
            if let waiter = state.waiter {
                state.waiter = nil
                return .handed(waiter)
            }
            state.queued.append(frame)
            return .queued
        }
        switch outcome {
        case .queued: break
        case .dropped: space.signal()
        case .handed(let waiter):
            space.signal()
            waiter.resume(returning: frame)
        }
    }

    /// True while the loop waits for input with nothing queued: every frame before this point has
    /// been taken, and the loop is below its in-flight bound. Only then may the reader compute a
    /// reply itself without passing the bound.
    var isLoopWaiting: Bool {
        state.withLock { $0.waiter != nil && $0.queued.isEmpty && !$0.finished }
    }

    /// Ends the sequence after the frames already put; later `put`s are dropped.
    func finish() {
        let waiter = state.withLock { state -> CheckedContinuation<PendingReply?, Never>? in
            state.finished = true
            guard state.queued.isEmpty else { return nil }
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: nil)
    }

    private func next() async -> PendingReply? {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> PendingReply?? in
                if !state.queued.isEmpty { return .some(state.queued.removeFirst()) }
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
        public mutating func next() async -> PendingReply? { await inbox.next() }
        public mutating func next(isolation actor: isolated (any Actor)?) async -> PendingReply? { await inbox.next() }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(inbox: self) }
}
