// Why tsan.supp exists: ThreadSanitizer on Linux reports correct uses of Synchronization.Mutex
// as races (Swift 6.3.1). Not part of any target; run it by hand:
//
//     swiftc -sanitize=thread MutexFalsePositive.swift -o /tmp/mutex && /tmp/mutex
//
// It prints "WARNING: ThreadSanitizer: Swift access race" for the Mutex below, and nothing for
// the same accesses under a pthread mutex. With TSAN_OPTIONS=suppressions=tsan.supp the Mutex
// reports are gone; a genuinely unguarded access (set `unguarded` to true) is still reported.
import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

final class Guarded: @unchecked Sendable {
    let mutex = Mutex<[Int: Int]>([:])
    let pthread: UnsafeMutablePointer<pthread_mutex_t> = {
        let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        pthread_mutex_init(lock, nil)
        return lock
    }()
    var underPthread: [Int: Int] = [:]
    var racy = 0
}

let unguarded = false
let shared = Guarded()
DispatchQueue.concurrentPerform(iterations: 4) { thread in
    for i in 0..<1000 {
        shared.mutex.withLock { $0[i % 7, default: 0] += thread }
        pthread_mutex_lock(shared.pthread)
        shared.underPthread[i % 7, default: 0] += thread
        pthread_mutex_unlock(shared.pthread)
        if unguarded { shared.racy += 1 }
    }
}
print(shared.mutex.withLock { $0.count }, shared.underPthread.count)
