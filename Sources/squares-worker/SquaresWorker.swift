import ArgumentParser
import Logging
import SquaresServer
import SquaresProtocol

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

@main
struct SquaresWorker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "squares-worker",
        abstract: "Serves calculate_squares over length-prefixed JSON-RPC 2.0 on stdin/stdout.",
        discussion: """
            Each message is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON. \
            stdout carries frames only; logs go to stderr. The worker exits 0 at the end of input, \
            on shutdown or on SIGTERM, after finishing the requests in flight; 1 when the input \
            ends, or a stop signal comes, inside a frame. See protocol/SPEC.md.
            """,
        version: ProtocolConstants.workerVersion
    )

    @Option(help: "Child tasks that share one big request, at least 1 (default: the active core count).")
    var parallelism: Int?

    @Option(help: "Frames processed at once (at least 1); at the bound the worker stops reading stdin.")
    var maxInFlight: Int = ProtocolConstants.defaultMaxInFlight

    @Option(help: "Frames longer than this many bytes (1 to 4294967295) are refused and skipped.")
    var maxFrameBytes: Int = ProtocolConstants.defaultMaxFrameBytes

    @Option(help: "Log level on stderr: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    @Flag(help: "Serve test/sleep, which the conformance suite uses to make timing deterministic.")
    var testMethods = false

    func validate() throws {
        if let parallelism, parallelism < 1 { throw ValidationError("--parallelism must be at least 1") }
        if maxInFlight < 1 { throw ValidationError("--max-in-flight must be at least 1") }
        // 0 would refuse every frame with a -32000 whose maxFrameBytes no client can honour.
        if maxFrameBytes < 1 || maxFrameBytes > Int(UInt32.max) {
            throw ValidationError("--max-frame-bytes must be between 1 and \(UInt32.max)")
        }
    }

    func run() async throws {
        let level = logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "squares-worker")
        let configuration = ServerConfiguration(
            parallelism: parallelism ?? activeProcessorCount(),
            maxInFlight: maxInFlight,
            maxFrameBytes: maxFrameBytes,
            testMethods: testMethods)

        // A reader that went away must not kill the worker: writes fail with EPIPE instead.
        signal(SIGPIPE, SIG_IGN)
        enlargePipeBuffers(logger: logger)
        let inbox = FrameInbox()
        let writer = FrameWriterThread(descriptor: STDOUT_FILENO, logger: logger)
        let server = Server(configuration: configuration, logger: logger)
        let reader = FrameReaderThread(
            descriptor: STDIN_FILENO, maxFrameBytes: maxFrameBytes,
            handOff: FrameHandOff(inbox: inbox, server: server, writer: writer), logger: logger)
        installStopSignalHandlers(wake: reader.stopDescriptor)
        writer.start()
        reader.start()
        logger.info("ready: parallelism \(configuration.parallelism), max in flight \(maxInFlight), max frame \(maxFrameBytes) bytes")

        let status = await server.run(inbox, writer: writer)
        logger.info("exiting with status \(status.rawValue)")
        // Every reply has been written (each request awaits its write); the reader thread may still
        // be blocked in read(2), so end the process rather than return.
        terminate(status.rawValue)
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// Ends the process (the reader thread may still be blocked in poll(2)).
func terminate(_ status: Int32) -> Never {
    exit(status)
}

/// Where the stop-signal handler writes, and how many stop signals came: the handler may only
/// touch plain globals and call async-signal-safe functions.
nonisolated(unsafe) private var stopWakeDescriptor: Int32 = -1
nonisolated(unsafe) private var stopSignalCount: Int32 = 0

/// SIGTERM or SIGINT: the reader stops reading, the worker finishes what is in flight and exits 0.
/// A second one: exit at once (128 + the signal), for a client that never reads the replies.
/// Installed with sigaction before the reader starts, so no signal can fall in a gap.
func installStopSignalHandlers(wake descriptor: Int32) {
    stopWakeDescriptor = descriptor
    let handler: @convention(c) (Int32) -> Void = { number in
        stopSignalCount += 1
        if stopSignalCount > 1 { _exit(128 + number) }
        var byte = UInt8(truncatingIfNeeded: number)
        _ = write(stopWakeDescriptor, &byte, 1)
    }
    var action = sigaction()
    #if os(Linux)
    action.__sigaction_handler.sa_handler = handler
    #else
    action.__sigaction_u.__sa_handler = handler
    #endif
    sigemptyset(&action.sa_mask)
    action.sa_flags = SA_RESTART
    for number in [SIGTERM, SIGINT] { sigaction(number, &action, nil) }
}

/// Asks for 1 MiB pipe buffers on stdin and stdout (Linux; best effort). With the default 64 KiB a
/// 20 MB reply takes hundreds of writer wake-ups and context switches on each side.
func enlargePipeBuffers(logger: Logger) {
    #if os(Linux)
    let setPipeSize: Int32 = 1031  // F_SETPIPE_SZ, which Glibc does not export to Swift
    for descriptor in [STDIN_FILENO, STDOUT_FILENO] {
        if fcntl(descriptor, setPipeSize, 1 << 20) < 0 {
            logger.debug("fd \(descriptor): pipe buffer left as is (\(String(cString: strerror(errno))))")
        }
    }
    #endif
}
