import Logging
@testable import SquaresProtocol
import Synchronization
import Testing
@testable import SquaresServer

/// Collects the frames the server writes.
final class CollectingWriter: ReplyWriter {
    private let frames = Mutex<[String]>([])

    func write(_ frame: OutboundFrame) async {
        let text = String(decoding: frame.segments.joined(), as: UTF8.self)
        frames.withLock { $0.append(text) }
    }

    var written: [String] { frames.withLock { $0 } }
}

/// Counts how many events the server has taken from its input.
struct CountingInbound: AsyncSequence, Sendable {
    typealias Element = FrameEvent
    typealias Failure = Never
    let base: AsyncStream<FrameEvent>
    let taken = Counter()

    struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncStream<FrameEvent>.AsyncIterator
        let taken: Counter
        mutating func next() async -> FrameEvent? {
            let event = await base.next()
            if event != nil { taken.increment() }
            return event
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: base.makeAsyncIterator(), taken: taken) }
}

final class Counter: Sendable {
    private let value = Mutex(0)
    func increment() { value.withLock { $0 += 1 } }
    var count: Int { value.withLock { $0 } }
}

/// A server running on an in-memory input, with no process and no pipes: each frame is prepared
/// as the serving loop takes it.
struct Harness {
    let input: AsyncStream<FrameEvent>.Continuation
    let inbound: CountingInbound
    let writer = CollectingWriter()
    let run: Task<ServerExitStatus, Never>

    init(_ configuration: ServerConfiguration = ServerConfiguration(parallelism: 2, testMethods: true)) {
        let (stream, continuation) = AsyncStream<FrameEvent>.makeStream()
        input = continuation
        inbound = CountingInbound(base: stream)
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let server = Server(configuration: configuration, logger: logger)
        let (inbound, writer) = (inbound, writer)
        run = Task { await server.run(inbound.map { await server.prepare($0) }, writer: writer) }
    }

    func send(_ text: String) { input.yield(.frame(FrameBytes(Array(text.utf8)))) }
    func send(_ event: FrameEvent) { input.yield(event) }

    /// The first `count` replies, waiting up to `seconds` for them (fewer if they do not come).
    func replies(_ count: Int, within seconds: Double = 60) async -> [String] {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while writer.written.count < count && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(2))
        }
        return Array(writer.written.prefix(count))
    }

    /// Ends the input and returns how the server ended.
    func finish() async -> ServerExitStatus {
        input.finish()
        return await run.value
    }
}

func request(_ id: Int, _ method: String, _ params: String? = nil) -> String {
    #"{"jsonrpc":"2.0","id":\#(id),"method":"\#(method)""# + (params.map { #","params":\#($0)"# } ?? "") + "}"
}
