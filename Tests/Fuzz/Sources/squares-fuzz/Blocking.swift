import Dispatch

/// Runs `body` on a detached task and blocks the calling thread until it has returned.
///
/// libFuzzer calls its entry point synchronously, but the reader and the codecs are async. The
/// thread that blocks here is libFuzzer's own, never one of the concurrency pool's threads, so the
/// pool keeps all its threads for `body` and its child tasks (STYLE.md's "no semaphore inside an
/// async context" holds: the semaphore is waited on outside any).
func runBlocking<T: Sendable>(_ body: @escaping @Sendable () async -> T) -> T {
    let slot = HandOff<T>()
    let done = DispatchSemaphore(value: 0)
    Task.detached {
        slot.value = await body()
        done.signal()
    }
    done.wait()
    return slot.value!
}

/// Written by the task before `signal()`, read after `wait()` returns: the semaphore orders the two
/// accesses, which is what makes the unchecked conformance sound.
private final class HandOff<T>: @unchecked Sendable {
    var value: T?
}
