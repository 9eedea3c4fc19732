import Logging
import SquaresCore
import SquaresProtocol

/// The serving loop: takes frames in order, runs each frame's first phase, and runs what the
/// phase leaves as a child task of one task group that lives as long as the connection.
///
/// The first phase (`firstPhase(_:)`) is synchronous and the same for every frame wherever it
/// runs — on this loop, or on the stdio reader thread while the loop is idle: it parses the frame,
/// registers its requests for cancellation and applies its `$/cancel` and `shutdown` in stream
/// order (a `$/cancel` always sees the requests read before it), and answers at once what is
/// cheap. At `maxInFlight` frames in flight the loop waits for one to finish before it takes
/// another: the transport stops reading and the pipe applies backpressure.
public struct Server: Sendable {
    public let configuration: ServerConfiguration
    let logger: Logger
    let cancellations = CancellationRegistry()
    let reader: JSONReader
    let methods: MethodRegistry
    let context: MethodContext

    public init(configuration: ServerConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        self.reader = JSONReader(parallelism: configuration.parallelism)
        self.methods = MethodRegistry.standard(testMethods: configuration.testMethods)
        self.context = MethodContext(configuration: configuration, methodNames: methods.names)
    }

    /// Serves `inbound` until it ends, a `shutdown` arrives or the input is cut inside a frame, then
    /// finishes the frames in flight (their replies written) and returns.
    public func run(_ inbound: some AsyncSequence<InboundEvent, Never>, writer: some ReplyWriter) async -> ServerExitStatus {
        var iterator = inbound.makeAsyncIterator()
        return await withTaskGroup(of: Void.self) { group in
            var inFlight = 0
            var status = ServerExitStatus.success
            reading: while true {
                while inFlight >= configuration.maxInFlight {
                    await group.next()
                    inFlight -= 1
                }
                guard let event = await iterator.next(isolation: nil) else {
                    logger.debug("end of input")
                    break reading
                }
                let plan: FramePlan
                switch event {
                case .frame(let bytes): plan = firstPhase(.frame(bytes))
                case .oversized(let length): plan = firstPhase(.oversized(length: length))
                case .planned(let planned): plan = planned
                case .truncated(let position):
                    logger.error("input ended \(position)")
                    status = .truncatedInput
                    break reading
                }
                switch plan.work {
                case .nothing: break
                case .reply(let reply):
                    group.addTask { await writer.write(reply) }
                    inFlight += 1
                case .job(let job):
                    group.addTask { if let reply = await job() { await writer.write(reply) } }
                    inFlight += 1
                }
                if plan.shutdown {
                    logger.debug("shutdown requested")
                    break reading
                }
            }
            await group.waitForAll()
            return status
        }
    }
}
