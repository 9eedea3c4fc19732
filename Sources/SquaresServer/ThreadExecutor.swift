import Dispatch
import SquaresCore

/// A task executor with a thread of its own (a serial Dispatch queue's): the stdio reader's task
/// runs there, so that its blocking reads never hold one of the concurrency pool's threads (one
/// per core), and a small frame is prepared and answered by plain `await`s on that thread, with no
/// task to create and no hop between threads: measured through a pipe (`make bench-e2e`), a small
/// call costs ~15 µs answered this way, ~80 µs through the serving loop.
final class ThreadExecutor: TaskExecutor, Sendable {
    private let jobs = Locked<[UnownedJob]>([])
    /// One signal per job enqueued.
    private let enqueued = DispatchSemaphore(value: 0)

    init(name: String) {
        DispatchQueue(label: name).async { [self] in
            while true {
                enqueued.wait()
                let job = jobs.withLock { $0.removeFirst() }
                job.runSynchronously(on: asUnownedTaskExecutor())
            }
        }
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        jobs.withLock { $0.append(job) }
        enqueued.signal()
    }
}
