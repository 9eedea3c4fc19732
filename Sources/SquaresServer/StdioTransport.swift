import Dispatch
import Logging
import SquaresCore
import SquaresProtocol
import SystemPackage

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads frames from a file descriptor in a task on a thread of its own (`ThreadExecutor`: blocking
/// reads never run on the concurrency pool, which has one thread per core), runs each frame's
/// `Server.prepare` there in stream order, and either answers a small frame itself — while the
/// serving loop is idle — or hands it to the loop through the inbox.
///
/// It alone ends the inbox: at the end of input, after a frame that stops the reading
/// (`shutdown`), or when woken by `requestStop` (a stop signal). So a frame it has read is always
/// handed over or answered before the stream ends, whenever the stop comes.
public final class FrameReader: Sendable {
    /// Bytes asked of each read(2): a 64 MiB frame arrives in 64 system calls.
    static let readSize = 1 << 20

    private let input: FileDescriptor
    private let stopPipe: (readEnd: FileDescriptor, writeEnd: FileDescriptor)
    private let maxFrameBytes: Int
    private let server: Server
    private let writer: FrameWriter
    private let inbox: FrameInbox
    private let answersSmallFrames: Bool
    private let logger: Logger

    /// - Parameter answersSmallFrames: compute small frames' replies on the reader thread while the
    ///   loop is idle (the worker does; the tests also run without).
    public init(
        input: FileDescriptor, maxFrameBytes: Int, server: Server, writer: FrameWriter, inbox: FrameInbox,
        answersSmallFrames: Bool = true, logger: Logger
    ) throws {
        (self.input, self.maxFrameBytes, self.server, self.writer) = (input, maxFrameBytes, server, writer)
        (self.inbox, self.answersSmallFrames, self.logger) = (inbox, answersSmallFrames, logger)
        stopPipe = try FileDescriptor.pipe()
    }

    public func start() {
        Task(executorPreference: ThreadExecutor(name: "frame-reader")) { [self] in await readUntilEnd() }
    }

    /// Makes the reader stop at the next frame boundary of its work and end the inbox (a stop
    /// signal's handler calls it). A frame half read is lost: the same exit as the input ending
    /// there (SPEC §9).
    public func requestStop(signal: Int32) {
        _ = try? stopPipe.writeEnd.writeAll([UInt8(truncatingIfNeeded: signal)])
    }

    private func readUntilEnd() async {
        var decoder = FrameDecoder(maxFrameBytes: maxFrameBytes)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.readSize, alignment: 16)
        defer { buffer.deallocate() }
        var events: [FrameEvent] = []
        var watched = [input, stopPipe.readEnd].map { pollfd(fd: $0.rawValue, events: Int16(POLLIN), revents: 0) }
        reading: while true {
            if poll(&watched, nfds_t(watched.count), -1) < 0 {
                if errno == EINTR { continue }
                logger.error("poll failed: \(Errno(rawValue: errno))")
                break
            }
            if watched[1].revents != 0 {
                var signal: UInt8 = 0
                _ = try? withUnsafeMutableBytes(of: &signal) { try stopPipe.readEnd.read(into: $0) }
                logger.info("stop requested (signal \(signal)): finishing the requests in flight")
                break
            }
            let count: Int
            do {
                count = try input.read(into: buffer)
            } catch Errno.resourceTemporarilyUnavailable {
                continue
            } catch {
                logger.error("read failed: \(error)")
                break
            }
            if count == 0 { break }
            events.removeAll(keepingCapacity: true)
            decoder.feed(UnsafeRawBufferPointer(rebasing: buffer[0..<count])) { events.append($0) }
            for event in events where await !hand(event) { break reading }
        }
        if let truncated = decoder.endOfInput() { _ = await hand(truncated) }
        inbox.finish()
    }

    /// Prepares one frame and answers it here or hands it to the loop; false when nothing after it
    /// is to be read.
    private func hand(_ event: FrameEvent) async -> Bool {
        let pending = await server.prepare(event)
        // Only while the loop is idle: it is below its in-flight bound, and every earlier frame
        // has been taken.
        if answersSmallFrames && pending.isSmall && pending.stopsReading == nil && inbox.isLoopWaiting {
            if let respond = pending.respond, let reply = await respond() { writer.writeNow(reply) }
        } else if pending.respond != nil || pending.stopsReading != nil {
            inbox.put(pending)
        }
        return pending.stopsReading == nil
    }
}

/// Writes reply frames to a file descriptor, each whole, in the order they are handed over, on a
/// serial Dispatch queue (its own thread while it blocks in write(2)).
public final class FrameWriter: ReplyWriter {
    /// Frames below this many bytes are copied into one buffer and written in one write(2), so that
    /// the client wakes once per small reply; bigger ones are written segment by segment.
    static let singleWriteBytes = 64 * 1024

    private let output: FileDescriptor
    private let logger: Logger
    private let queue = DispatchQueue(label: "frame-writer")
    /// True once the descriptor cannot be written (the reader is gone): later frames are dropped,
    /// and the worker goes on until its input ends. Touched on `queue` only (so never contended).
    private let broken = Locked(false)

    public init(output: FileDescriptor, logger: Logger) {
        self.output = output
        self.logger = logger
    }

    public func write(_ frame: OutboundFrame) async {
        await withCheckedContinuation { continuation in
            queue.async { [self] in
                writeWhole(frame)
                continuation.resume()
            }
        }
    }

    /// Writes `frame` on the calling thread (a dedicated one: this blocks), after any frame being
    /// written from the queue.
    func writeNow(_ frame: OutboundFrame) {
        queue.sync { writeWhole(frame) }
    }

    private func writeWhole(_ frame: OutboundFrame) {
        guard !broken.withLock({ $0 }) else { return }
        let header = frameHeader(length: frame.byteCount)
        do {
            if frame.byteCount < Self.singleWriteBytes {
                var bytes = header
                bytes.reserveCapacity(4 + frame.byteCount)
                for segment in frame.segments { bytes.append(contentsOf: segment) }
                _ = try output.writeAll(bytes)
            } else {
                _ = try output.writeAll(header)
                for segment in frame.segments { _ = try output.writeAll(segment) }
            }
        } catch {
            logger.error("write failed: \(error); dropping replies")
            broken.withLock { $0 = true }
        }
    }
}
