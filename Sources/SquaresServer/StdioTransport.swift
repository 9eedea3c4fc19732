import Dispatch
import Logging
import SquaresProtocol
import SquaresCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads frames from a file descriptor on a dedicated thread (blocking reads never run on the
/// concurrency pool, which has one thread per core) and hands them over through a `FrameHandOff`.
///
/// It alone ends the inbox: at the end of input, or when woken through `stopDescriptor` (the
/// stop-signal handler writes a byte there). So a frame it has read is always handed over or
/// answered before the stream ends, whenever the stop comes.
public final class FrameReaderThread: Sendable {
    let inbox: FrameInbox
    /// Writing a byte here (async-signal-safe) makes the reader stop reading and end the inbox.
    public let stopDescriptor: Int32
    private let stopReadEnd: Int32
    private let descriptor: Int32
    private let maxFrameBytes: Int
    private let logger: Logger
    private let handOff: FrameHandOff

    public init(descriptor: Int32, maxFrameBytes: Int, handOff: FrameHandOff, logger: Logger) {
        self.descriptor = descriptor
        self.maxFrameBytes = maxFrameBytes
        self.inbox = handOff.inbox
        self.handOff = handOff
        self.logger = logger
        var ends: [Int32] = [-1, -1]
        precondition(pipe(&ends) == 0, "cannot create the stop pipe: \(String(cString: strerror(errno)))")
        (stopReadEnd, stopDescriptor) = (ends[0], ends[1])
    }

    /// Stops reading at the next frame boundary of the reader's work (for tests; the worker's
    /// signal handler writes to `stopDescriptor` itself).
    func requestStop() {
        var byte: UInt8 = 0
        _ = write(stopDescriptor, &byte, 1)
    }

    public func start() {
        startDedicatedThread(name: "frame-reader") { [self] in readUntilEnd() }
    }

    private func readUntilEnd() {
        var decoder = FrameDecoder(maxFrameBytes: maxFrameBytes)
        // 1 MiB reads: a 64 MiB frame arrives in 64 system calls.
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        var watched = [pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0), pollfd(fd: stopReadEnd, events: Int16(POLLIN), revents: 0)]
        while true {
            if poll(&watched, 2, -1) < 0 {
                if errno == EINTR { continue }
                logger.error("poll failed: \(String(cString: strerror(errno)))")
                break
            }
            if watched[1].revents != 0 {
                var signal: UInt8 = 0
                _ = read(stopReadEnd, &signal, 1)
                logger.info("stop requested (signal \(signal)): finishing the requests in flight")
                // A frame half read is lost: the same exit as the input ending there (SPEC §9).
                if !decoder.isAtFrameBoundary {
                    inbox.put(.truncated(position: decoder.positionDescription))
                }
                inbox.finish()
                return
            }
            let n = read(descriptor, buffer.baseAddress, buffer.count)
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                logger.error("read failed: \(String(cString: strerror(errno)))")
                break
            }
            if n == 0 { break }
            decoder.feed(UnsafeRawBufferPointer(rebasing: buffer[0..<n])) { handOff.hand($0) }
        }
        if !decoder.isAtFrameBoundary {
            inbox.put(.truncated(position: decoder.positionDescription))
        }
        inbox.finish()
    }
}

/// How the reader thread hands each frame to the serving loop: as read, or — while the loop waits
/// with nothing queued, and a server is given — through the server's first phase on the reader
/// thread itself, its ready reply written from there. A small call then costs no hop between
/// threads: measured through a pipe (`make bench-e2e`), a 10-number call took ~80 µs through the
/// loop (reader thread → loop → child task → writer thread) and ~15 µs this way.
public struct FrameHandOff: Sendable {
    let inbox: FrameInbox
    private let server: Server?
    private let writer: FrameWriterThread?

    /// Every frame goes to the loop.
    init(inbox: FrameInbox) {
        (self.inbox, server, writer) = (inbox, nil, nil)
    }

    /// Frames read while the loop is idle go through `server`'s first phase here; replies ready at
    /// once are written to `writer` from this thread.
    public init(inbox: FrameInbox, server: Server, writer: FrameWriterThread) {
        (self.inbox, self.server, self.writer) = (inbox, server, writer)
    }

    func hand(_ event: FrameEvent) {
        // Only while the loop is idle: every earlier frame has had its first phase, and the loop
        // is below its in-flight bound and has not stopped at a `shutdown`.
        guard let server, let writer, inbox.isLoopWaiting else {
            switch event {
            case .frame(let bytes): inbox.put(.frame(bytes))
            case .oversized(let length): inbox.put(.oversized(length: length))
            }
            return
        }
        let plan = server.firstPhase(event)
        switch plan.work {
        case .nothing where !plan.shutdown: return
        case .reply(let reply) where !plan.shutdown: writer.writeNow(reply)
        default: inbox.put(.planned(plan))
        }
    }
}

/// Writes reply frames to a file descriptor on a dedicated thread, each frame whole (header and
/// segments in one `writev` loop), in the order they were handed over.
public final class FrameWriterThread: ReplyWriter {
    private struct Item {
        var frame: OutboundFrame
        var written: CheckedContinuation<Void, Never>
    }

    private let descriptor: Int32
    private let logger: Logger
    private let queue = Locked<[Item]>([])
    private let available = DispatchSemaphore(value: 0)
    /// Held for each whole frame, by the writer thread or the reader's inline path; true once the
    /// descriptor cannot be written.
    private let output = Locked(false)

    public init(descriptor: Int32, logger: Logger) {
        self.descriptor = descriptor
        self.logger = logger
    }

    public func start() {
        startDedicatedThread(name: "frame-writer") { [self] in writeForever() }
    }

    public func write(_ frame: OutboundFrame) async {
        await withCheckedContinuation { continuation in
            queue.withLock { $0.append(Item(frame: frame, written: continuation)) }
            available.signal()
        }
    }

    private func writeForever() {
        while true {
            available.wait()
            guard let item = queue.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) else { continue }
            writeNow(item.frame)
            item.written.resume()
        }
    }

    /// Writes `frame` on the calling thread (a dedicated one: this blocks), after any frame being
    /// written by another thread.
    func writeNow(_ frame: OutboundFrame) {
        output.withLock { broken in
            if !broken && !writeWhole(frame) { broken = true }
        }
    }

    /// Returns false once the descriptor cannot be written (the reader is gone); later frames are
    /// dropped, and the worker goes on until its input ends.
    private func writeWhole(_ frame: OutboundFrame) -> Bool {
        let header = frameHeader(length: frame.byteCount)
        var pieces = [header] + frame.segments.filter { !$0.isEmpty }
        var index = 0, offset = 0
        while index < pieces.count {
            let batch = min(pieces.count - index, 64)
            let written: Int = withIOVectors(pieces[index..<index + batch], firstOffset: offset) { vectors in
                writev(descriptor, vectors.baseAddress, Int32(vectors.count))
            }
            if written < 0 {
                if errno == EINTR { continue }
                logger.error("write failed: \(String(cString: strerror(errno))); dropping replies")
                return false
            }
            var remaining = written
            while remaining > 0 {
                let left = pieces[index].count - offset
                if remaining >= left { remaining -= left; index += 1; offset = 0 } else { offset += remaining; remaining = 0 }
            }
        }
        pieces.removeAll()
        return true
    }

    private func withIOVectors<R>(_ pieces: ArraySlice<[UInt8]>, firstOffset: Int, _ body: (UnsafeBufferPointer<iovec>) -> R) -> R {
        var vectors: [iovec] = []
        vectors.reserveCapacity(pieces.count)
        return withPinnedBases(pieces, into: &vectors, firstOffset: firstOffset, body)
    }

    // Pins each piece's storage while `writev` runs, recursing so every `withUnsafeBytes` scope
    // stays open.
    private func withPinnedBases<R>(_ pieces: ArraySlice<[UInt8]>, into vectors: inout [iovec], firstOffset: Int, _ body: (UnsafeBufferPointer<iovec>) -> R) -> R {
        guard let first = pieces.first else { return vectors.withUnsafeBufferPointer(body) }
        return first.withUnsafeBytes { raw in
            let skip = vectors.isEmpty ? firstOffset : 0
            vectors.append(iovec(iov_base: UnsafeMutableRawPointer(mutating: raw.baseAddress! + skip), iov_len: raw.count - skip))
            return withPinnedBases(pieces.dropFirst(), into: &vectors, firstOffset: firstOffset, body)
        }
    }
}
