import Dispatch
import SquaresCore

/// A task executor whose jobs run on the thread that calls `run`: the stdio reader thread runs
/// the same async code as a child task would (`Server.prepare`, a small frame's reply) without a
/// hop to the concurrency pool and back. Measured through a pipe (`make bench-e2e`, docs/design.md)
/// a small call costs ~15 µs answered this way and ~80 µs through the serving loop.
final class CallingThreadExecutor: TaskExecutor, Sendable {
    private let jobs = Locked<[UnownedJob]>([])
    /// One signal per job enqueued.
    private let enqueued = DispatchSemaphore(value: 0)

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        jobs.withLock { $0.append(job) }
        enqueued.signal()
    }

    /// Runs `body` to its end, its jobs on this thread (blocked while it waits for work elsewhere,
    /// such as the pieces of a big frame's parse on the concurrency pool). Call from one dedicated
    /// thread only, never from the concurrency pool.
    func run<Value: Sendable>(_ body: @escaping @Sendable () async -> Value) -> Value {
        let result = Locked<Value?>(nil)
        Task(executorPreference: self) {
            let value = await body()
            result.withLock { $0 = value }
        }
        while true {
            enqueued.wait()
            let job = jobs.withLock { $0.removeFirst() }
            job.runSynchronously(on: asUnownedTaskExecutor())
            if let value = result.withLock({ $0 }) { return value }
        }
    }
}
