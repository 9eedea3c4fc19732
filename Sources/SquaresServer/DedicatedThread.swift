import CSquaresSystem

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Starts `body` on a new, detached POSIX thread named `name`. The transport's blocking reads and
/// writes run there, never on the concurrency pool (one thread per core). A pthread rather than
/// Foundation's `Thread`: Foundation and the ICU it loads made up most of the static binary.
func startDedicatedThread(name: String, _ body: @escaping @Sendable () -> Void) {
    let start = Unmanaged.passRetained(ThreadStart(name: name, body: body)).toOpaque()
    #if canImport(Darwin)
    var thread: pthread_t?
    #else
    var thread = pthread_t()
    #endif
    let created = pthread_create(&thread, nil, { argument in
        let start = Unmanaged<ThreadStart>.fromOpaque(argument!).takeRetainedValue()
        csquares_set_thread_name(start.name)
        start.body()
        return nil
    }, start)
    precondition(created == 0, "cannot start thread \(name): \(String(cString: strerror(created)))")
    #if canImport(Darwin)
    pthread_detach(thread!)
    #else
    pthread_detach(thread)
    #endif
}

/// What a new thread runs, passed through `pthread_create`'s one pointer.
private final class ThreadStart {
    let name: String
    let body: @Sendable () -> Void
    init(name: String, body: @escaping @Sendable () -> Void) { self.name = name; self.body = body }
}

/// The cores this process may run on: its CPU affinity mask on Linux (as `taskset` or a
/// container's cpuset leave it), else the online processors.
public func activeProcessorCount() -> Int {
    let inMask = Int(csquares_affinity_cpu_count())
    return inMask > 0 ? inMask : max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
}
