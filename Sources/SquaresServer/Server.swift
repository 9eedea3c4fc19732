import Logging
import SquaresCore
import SquaresProtocol

/// The serving loop: takes the frames read (`prepare(_:)`, in stream order) and computes each
/// reply in a child task of one task group that lives as long as the connection.
///
/// `prepare(_:)` runs wherever the frames are read — on the stdio reader thread, or in the loop's
/// own input sequence in the tests — and applies each request's `$/cancel` and `shutdown` in
/// stream order. At `maxInFlight` frames in flight the loop waits for one to finish before it takes
/// another: the transport stops reading and the pipe applies backpressure.
public struct Server: Sendable {
    public let configuration: ServerConfiguration
    let logger: Logger
    let cancellations = CancellationRegistry()
    let reader = JSONReader()
    let methods: MethodRegistry
    let context: MethodContext

    public init(configuration: ServerConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        self.methods = MethodRegistry.standard(testMethods: configuration.testMethods)
        self.context = MethodContext(configuration: configuration, methodNames: methods.names)
    }

    /// Serves `frames` until they end or one stops the reading (`shutdown`, the input cut inside a
    /// frame), then finishes the frames in flight (their replies written) and returns.
    public func run(_ frames: some AsyncSequence<PendingReply, Never>, writer: some ReplyWriter) async -> ServerExitStatus {
        var iterator = frames.makeAsyncIterator()
        return await withTaskGroup(of: Void.self) { group in
            var inFlight = 0
            while true {
                while inFlight >= configuration.maxInFlight {
                    await group.next()
                    inFlight -= 1
                }
                guard let pending = await iterator.next(isolation: nil) else {
                    logger.debug("end of input")
                    break
                }
                if let respond = pending.respond {
                    group.addTask { if let reply = await respond() { await writer.write(reply) } }
                    inFlight += 1
                }
                if let status = pending.stopsReading {
                    logger.debug("stopped reading: \(status)")
                    await group.waitForAll()
                    return status
                }
            }
            await group.waitForAll()
            return .success
        }
    }
}
