import ArgumentParser
import CSquaresSystem
import Dispatch
import Logging
import SquaresProtocol
import SquaresServer
import Synchronization
import SystemPackage

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
            parallelism: parallelism ?? ServerConfiguration.activeProcessorCount,
            maxInFlight: maxInFlight,
            maxFrameBytes: maxFrameBytes,
            testMethods: testMethods)

        // A reader that went away must not kill the worker: writes fail with EPIPE instead.
        signal(SIGPIPE, SIG_IGN)
        enlargePipeBuffers(logger: logger)
        let inbox = FrameInbox()
        let writer = FrameWriter(output: .standardOutput, logger: logger)
        let server = Server(configuration: configuration, logger: logger)
        let reader = try FrameReader(
            input: .standardInput, maxFrameBytes: maxFrameBytes, server: server, writer: writer, inbox: inbox, logger: logger)
        let stopSignals = handleStopSignals(reader.requestStop)
        reader.start()
        logger.info("ready: parallelism \(configuration.parallelism), max in flight \(maxInFlight), max frame \(maxFrameBytes) bytes")

        let status = await server.run(inbox, writer: writer)
        logger.info("exiting with status \(status.rawValue)")
        withExtendedLifetime(stopSignals) {}
        // Every reply has been written (each request awaits its write); the reader thread may still
        // be blocked in poll(2), so end the process rather than return.
        terminate(status.rawValue)
    }
}

/// Ends the process (`exit` alone would name the command's static method).
func terminate(_ status: Int32) -> Never { exit(status) }

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// Stop signals received so far.
private let stopSignalsReceived = Atomic<Int>(0)

/// SIGTERM or SIGINT: the reader stops reading, the worker finishes what is in flight and exits 0.
/// A second one: exit at once (128 + the signal), for a client that never reads the replies.
/// Dispatch sources, set up before the reader starts, so that no signal falls in a gap; the
/// signals' default action is turned off for them to see the signals instead.
func handleStopSignals(_ stop: @escaping @Sendable (Int32) -> Void) -> [any DispatchSourceSignal] {
    let queue = DispatchQueue(label: "stop-signals")
    return [SIGTERM, SIGINT].map { number in
        signal(number, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
        source.setEventHandler {
            if stopSignalsReceived.add(1, ordering: .relaxed).newValue > 1 { _exit(128 + number) }
            stop(number)
        }
        source.resume()
        return source
    }
}

/// Asks for 1 MiB pipe buffers on stdin and stdout (Linux; best effort). With the default 64 KiB a
/// 20 MB reply takes hundreds of writer wake-ups and context switches on each side.
func enlargePipeBuffers(logger: Logger) {
    let pipeBytes: Int32 = 1 << 20
    for descriptor in [FileDescriptor.standardInput, .standardOutput] where csquares_set_pipe_size(descriptor.rawValue, pipeBytes) < 0 {
        logger.debug("fd \(descriptor.rawValue): pipe buffer left as is (\(Errno(rawValue: errno)))")
    }
}
