import CSquaresSystem
import Foundation
@testable import SquaresProtocol
import SquaresCore
import Testing
@testable import SquaresServer

#if canImport(Glibc)
import Glibc
#endif

/// A segment made as a client of the shared-memory plane makes one: a memfd of mode 0600 (unless
/// told otherwise), sized for its numbers and their results, the numbers written at offset 0, then
/// sealed F_SEAL_SHRINK (`seals`; nil: made without MFD_ALLOW_SEALING, so never sealed). The
/// test reads and writes it with pread/pwrite, never maps it, so that a line of /proc/self/maps
/// naming it is the worker's mapping.
final class TestSegment: Sendable {
    /// Every test segment's name starts with this (random: tests of several runs never meet).
    static let prefix = "swift-test-" + String(UInt64.random(in: .min ... .max), radix: 16) + "-"
    private static let counter = Locked(0)

    static func nextName(prefix: String = TestSegment.prefix) -> String {
        prefix + String(counter.withLock { $0 += 1; return $0 })
    }

    let descriptor: Int32
    let name: String
    let count: Int

    init(_ numbers: [UInt32], name: String = TestSegment.nextName(), size: Int? = nil, mode: mode_t = 0o600,
         seals: Int32? = csquares_seal_shrink) {
        self.name = name
        count = numbers.count
        descriptor = csquares_memfd_create(name, seals == nil ? 0 : 1)
        precondition(descriptor >= 0, "memfd_create: \(String(cString: strerror(errno)))")
        precondition(fchmod(descriptor, mode) == 0)
        precondition(ftruncate(descriptor, off_t(size ?? reference.byteCount)) == 0)
        let written = numbers.map(\.littleEndian).withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, 0) }
        precondition(written == 4 * numbers.count)
        if let seals { precondition(csquares_add_seals(descriptor, seals) == 0, "F_ADD_SEALS: \(String(cString: strerror(errno)))") }
    }

    deinit { close(descriptor) }

    var reference: SharedSegmentReference { SharedSegmentReference(pid: getpid(), fd: descriptor, name: name, count: count) }

    /// `numbersShm`'s value naming this segment.
    var json: String { #"{"pid":\#(getpid()),"fd":\#(descriptor),"name":"\#(name)","count":\#(count)}"# }

    /// The `count` integers at `offset` (fewer where the file ends).
    func read<T: FixedWidthInteger>(_ type: T.Type, count: Int, at offset: Int) -> [T] {
        var values = [T](repeating: 0, count: count)
        let length = values.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, $0.count, off_t(offset)) }
        return values.prefix(max(0, length) / MemoryLayout<T>.size).map(T.init(littleEndian:))
    }

    var numbers: [UInt32] { read(UInt32.self, count: count, at: 0) }
    var results: [UInt64] { read(UInt64.self, count: count, at: reference.resultOffset) }

    /// Whether this process maps the segment (the worker's mapping: the test has none).
    var isMapped: Bool {
        (try? String(contentsOfFile: "/proc/self/maps", encoding: .utf8))?.contains("/memfd:\(name) (deleted)") ?? true
    }
}

/// A context whose `shmPrefix` is armed with the test segments' prefix (unless `armed` is false).
func sharedMemoryContext(parallelism: Int, armed: Bool = true, served: Bool = true) -> MethodContext {
    let context = MethodContext(configuration: ServerConfiguration(parallelism: parallelism, sharedMemory: served), methodNames: [])
    if armed { context.shmPrefix.arm(TestSegment.prefix) }
    return context
}

/// How a method answered params: the result's JSON text or the error, and whether the request was
/// small enough for the reader thread to answer (else a child task would).
struct Answered {
    var result: Result<String, RPCError>
    var isSmall: Bool
}

/// Decodes `params` (JSON text; big arrays in 3 parallel pieces) and computes the call, until
/// `signal` fires when one is given, as the server would.
func answer(_ method: RegisteredMethod, _ params: String, in context: MethodContext, signal: CancellationSignal? = nil) async throws -> Answered {
    let params = try await JSONReader(parallelSpanBytes: 1).parse(Array(params.utf8), parallelism: 3)
    let call: Call
    switch method.call(params, context) {
    case .failure(let error): return Answered(result: .failure(error), isSmall: true)
    case .success(let decoded): call = decoded
    }
    let isSmall = call.workSize < MethodContext.inlineWorkLimit
    let body: ResultBody
    do {
        body = if let signal { try await withCancellation(by: signal, call.compute) } else { try await call.compute() }
    } catch let error as RPCError {
        return Answered(result: .failure(error), isSmall: isSmall)
    }
    switch body {
    case .value(let value):
        return Answered(result: .success(String(decoding: JSONWriter.encode(value), as: UTF8.self)), isSmall: isSmall)
    case .encoded(let segments):
        return Answered(result: .success(String(decoding: segments.joined(), as: UTF8.self)), isSmall: isSmall)
    }
}

/// The `data` of every refusal of a segment (computed: a global `JSONValue` is a box LeakSanitizer reports).
var invalidShm: JSONValue { .object(["reason": .string("invalid_shm")]) }

@Suite("calculate_squares through shared memory (numbersShm)", .enabled(if: ServerConfiguration.sharedMemoryAvailable))
struct SharedMemoryTests {
    let squares = RegisteredMethod(CalculateSquares())

    func numbers(_ count: Int) -> [UInt32] {
        var generator = SystemRandomNumberGenerator()
        return (0..<count).map { _ in UInt32.random(in: 0...UInt32.max, using: &generator) }
    }

    @Test("the squares are written in place at 8·ceil(C/2), in one pass or in parallel pieces; nothing stays mapped",
          arguments: [1, 5, 8_191, 8_192, 100_001, 300_000])
    func roundTrip(count: Int) async throws {
        var values = numbers(count)
        values[0] = UInt32.max
        let segment = TestSegment(values)
        let answered = try await answer(squares, #"{"numbersShm":"# + segment.json + "}", in: sharedMemoryContext(parallelism: 3))
        let offset = 8 * ((count + 1) / 2)
        #expect(try answered.result.get() == #"{"squaresShm":{"offset":\#(offset),"count":\#(count)}}"#)
        #expect(answered.isSmall == (count < MethodContext.inlineWorkLimit), "big maps run in a child task")
        #expect(segment.results == values.map { UInt64($0) * UInt64($0) })
        #expect(segment.numbers == values, "the numbers are left as they were")
        #expect(!segment.isMapped)
    }

    @Test("a segment bigger than needed is taken; its results are at the same offset")
    func biggerSegment() async throws {
        let values: [UInt32] = [3, 4, 5]
        let segment = TestSegment(values, size: 1 << 16)
        let answered = try await answer(squares, #"{"numbersShm":"# + segment.json + "}", in: sharedMemoryContext(parallelism: 2))
        #expect(try answered.result.get() == #"{"squaresShm":{"offset":16,"count":3}}"#)
        #expect(segment.read(UInt64.self, count: 3, at: 16) == [9, 16, 25])
    }

    @Test("count 0: checked, nothing mapped, answered at once")
    func empty() async throws {
        let segment = TestSegment([])
        let answered = try await answer(squares, #"{"numbersShm":"# + segment.json + "}", in: sharedMemoryContext(parallelism: 2))
        #expect(try answered.result.get() == #"{"squaresShm":{"offset":0,"count":0}}"#)
        #expect(answered.isSmall)
        let other = TestSegment([])
        let wrongName = #"{"numbersShm":{"pid":\#(getpid()),"fd":\#(other.descriptor),"name":"\#(TestSegment.prefix)x","count":0}}"#
        #expect(try await answer(squares, wrongName, in: sharedMemoryContext(parallelism: 2)).result.failure?.data == invalidShm)
    }

    @Test("more than one of numbers, numbersPacked and numbersShm is invalid_shape", arguments: [
        #"{"numbers":[1],"numbersShm":{}}"#, #"{"numbersPacked":"","numbersShm":5}"#,
        #"{"numbers":[1],"numbersPacked":"","numbersShm":{"pid":1,"fd":1,"name":"x","count":1}}"#,
    ])
    func shape(params: String) async throws {
        let error = try #require(try await answer(squares, params, in: sharedMemoryContext(parallelism: 2)).result.failure)
        #expect(error.data == .object(["reason": .string("invalid_shape")]))
    }

    /// A reference to a real segment with one member replaced (nil: left out).
    func reference(_ segment: TestSegment, _ member: String, _ value: String?) -> String {
        let members = [("pid", "\(getpid())"), ("fd", "\(segment.descriptor)"), ("name", "\"\(segment.name)\""), ("count", "\(segment.count)")]
        let kept = members.compactMap { key, text -> String? in
            guard key == member else { return #""\#(key)":\#(text)"# }
            return value.map { #""\#(key)":\#($0)"# }
        }
        return "{" + kept.joined(separator: ",") + "}"
    }

    @Test("a reference of the wrong shape, a member missing, of the wrong type or out of range is invalid_shm", arguments: [
        ("pid", nil), ("fd", nil), ("name", nil), ("count", nil),
        ("pid", "0"), ("pid", "-1"), ("pid", "2147483648"), ("pid", "\"1\""), ("pid", "1.5"), ("pid", "1e3"), ("pid", "null"),
        ("fd", "-1"), ("fd", "2147483648"), ("fd", "3.0"), ("fd", "true"),
        ("count", "-1"), ("count", "4294967296"), ("count", "0.5"), ("count", "\"1\""), ("count", "99999999999999999999999"),
        ("name", "\"\""), ("name", "5"), ("name", "null"), ("name", "\"\(TestSegment.prefix)a/b\""), ("name", "\"\(TestSegment.prefix)a b\""),
        ("name", "\"\(TestSegment.prefix)\u{e9}\""), ("name", "\"\(TestSegment.prefix + String(repeating: "a", count: 250 - TestSegment.prefix.count))\""),
    ] as [(String, String?)])
    func malformed(member: String, value: String?) async throws {
        let segment = TestSegment([1, 2, 3])
        let params = #"{"numbersShm":"# + reference(segment, member, value) + "}"
        let error = try #require(try await answer(squares, params, in: sharedMemoryContext(parallelism: 2)).result.failure, "\(params)")
        #expect(error.code == .invalidParams)
        #expect(error.data == invalidShm, "\(params)")
        #expect(segment.results == [0, 0, 0])
    }

    @Test("not an object is invalid_shm", arguments: ["5", "[]", "null", "\"x\"", "[1,2,3]"])
    func notAnObject(value: String) async throws {
        let error = try #require(try await answer(squares, #"{"numbersShm":"# + value + "}", in: sharedMemoryContext(parallelism: 2)).result.failure)
        #expect(error.data == invalidShm)
    }

    @Test("a name of 249 bytes is taken")
    func longestName() async throws {
        let segment = TestSegment([7], name: TestSegment.prefix + String(repeating: "a", count: 249 - TestSegment.prefix.count))
        let answered = try await answer(squares, #"{"numbersShm":"# + segment.json + "}", in: sharedMemoryContext(parallelism: 2))
        #expect(try answered.result.get() == #"{"squaresShm":{"offset":8,"count":1}}"#)
        #expect(segment.results == [49])
    }

    /// The refusal of a real segment: invalid_shm, with no index, and nothing written.
    func expectRefused(_ params: String, _ segment: TestSegment?, in context: MethodContext = sharedMemoryContext(parallelism: 2),
                       sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let error = try #require(try await answer(squares, params, in: context).result.failure, sourceLocation: sourceLocation)
        #expect(error.code == .invalidParams, sourceLocation: sourceLocation)
        #expect(error.data == invalidShm, "\(error.message)", sourceLocation: sourceLocation)
        if let segment {
            #expect(segment.results.allSatisfy { $0 == 0 }, sourceLocation: sourceLocation)
            #expect(!segment.isMapped, sourceLocation: sourceLocation)
        }
    }

    @Test("no prefix armed, or a name without it: refused before anything is looked at", arguments: [1, 10_000])
    func prefix(count: Int) async throws {
        let segment = TestSegment(numbers(count))
        try await expectRefused(#"{"numbersShm":"# + segment.json + "}", segment, in: sharedMemoryContext(parallelism: 2, armed: false))
        let stranger = TestSegment(numbers(count), name: TestSegment.nextName(prefix: "other-"))
        try await expectRefused(#"{"numbersShm":"# + stranger.json + "}", stranger)
        // The prefix is a prefix of the name, not anywhere in it.
        let inside = TestSegment(numbers(count), name: TestSegment.nextName(prefix: "x" + TestSegment.prefix))
        try await expectRefused(#"{"numbersShm":"# + inside.json + "}", inside)
    }

    @Test("the fd must be the memfd of that name: another memfd, a pipe, a file, a closed fd, no such process")
    func notThatSegment() async throws {
        let segment = TestSegment([1, 2])
        let other = TestSegment([1, 2])
        let pid = getpid()
        // Another memfd's fd under this segment's name, and this fd under a name it does not have.
        try await expectRefused(#"{"numbersShm":{"pid":\#(pid),"fd":\#(other.descriptor),"name":"\#(segment.name)","count":2}}"#, segment)
        try await expectRefused(#"{"numbersShm":{"pid":\#(pid),"fd":\#(segment.descriptor),"name":"\#(segment.name)x","count":2}}"#, segment)
        var ends: [Int32] = [-1, -1]
        #expect(pipe(&ends) == 0)
        defer { close(ends[0]); close(ends[1]) }
        try await expectRefused(#"{"numbersShm":{"pid":\#(pid),"fd":\#(ends[0]),"name":"\#(segment.name)","count":0}}"#, nil)
        let file = try #require(tmpfile())
        defer { fclose(file) }
        try await expectRefused(#"{"numbersShm":{"pid":\#(pid),"fd":\#(fileno(file)),"name":"\#(segment.name)","count":0}}"#, nil)
        try await expectRefused(#"{"numbersShm":{"pid":\#(pid),"fd":2147483647,"name":"\#(segment.name)","count":2}}"#, segment)
        // Above Linux's largest pid_max (2^22): no such process.
        try await expectRefused(#"{"numbersShm":{"pid":2147483647,"fd":\#(segment.descriptor),"name":"\#(segment.name)","count":2}}"#, segment)
        #expect(segment.results == [0, 0] && other.results == [0, 0])
    }

    @Test("a mode with group or other bits is refused (memfd_create's own is 0777)", arguments: [0o777, 0o644, 0o640, 0o604, 0o610, 0o601] as [mode_t])
    func mode(mode: mode_t) async throws {
        let segment = TestSegment([1, 2, 3], mode: mode)
        try await expectRefused(#"{"numbersShm":"# + segment.json + "}", segment)
        #expect(fchmod(segment.descriptor, 0o600) == 0)
        #expect(try await answer(squares, #"{"numbersShm":"# + segment.json + "}", in: sharedMemoryContext(parallelism: 2)).result.get()
            == #"{"squaresShm":{"offset":16,"count":3}}"#)
        #expect(segment.results == [1, 4, 9])
    }

    @Test("a segment not sealed F_SEAL_SHRINK is refused: made without MFD_ALLOW_SEALING, unsealed, or sealed against growing only",
          arguments: [nil, 0, csquares_seal_grow, csquares_seal_grow | csquares_seal_seal] as [Int32?])
    func unsealed(seals: Int32?) async throws {
        let segment = TestSegment([1, 2, 3], seals: seals)
        try await expectRefused(#"{"numbersShm":"# + segment.json + "}", segment)
        #expect(segment.numbers == [1, 2, 3])
        if seals == nil || seals! & csquares_seal_seal != 0 {  // F_SEAL_SEAL: it can never be sealed now
            #expect(csquares_add_seals(segment.descriptor, csquares_seal_shrink) == -1 && errno == EPERM)
        } else {  // sealed now, the same segment is served
            #expect(csquares_add_seals(segment.descriptor, csquares_seal_shrink) == 0)
            #expect(try await answer(squares, #"{"numbersShm":"# + segment.json + "}", in: sharedMemoryContext(parallelism: 2)).result.get()
                == #"{"squaresShm":{"offset":16,"count":3}}"#)
            #expect(segment.results == [1, 4, 9])
        }
    }

    @Test("F_SEAL_SHRINK with other seals is served (F_SEAL_GROW, F_SEAL_SEAL)",
          arguments: [csquares_seal_shrink | csquares_seal_grow, csquares_seal_shrink | csquares_seal_grow | csquares_seal_seal])
    func sealed(seals: Int32) async throws {
        let segment = TestSegment([5, 6, UInt32.max], seals: seals)
        #expect(csquares_get_seals(segment.descriptor) & seals == seals)
        let answered = try await answer(squares, #"{"numbersShm":"# + segment.json + "}", in: sharedMemoryContext(parallelism: 2))
        #expect(try answered.result.get() == #"{"squaresShm":{"offset":16,"count":3}}"#)
        #expect(segment.results == [25, 36, 18_446_744_065_119_617_025])
        #expect(!segment.isMapped)
    }

    @Test("the seals are read through the opened fd: an unsealed memfd is refused by checkOpened itself")
    func sealCheckedOnTheOpenedFd() throws {
        let sealed = TestSegment([1, 2]), unsealed = TestSegment([1, 2], seals: nil)
        #expect(throws: Never.self) { try MappedSegment.checkOpened(sealed.descriptor, sealed.reference) }
        let error = try #require(throws: RPCError.self) { try MappedSegment.checkOpened(unsealed.descriptor, unsealed.reference) }
        #expect(error.data == invalidShm)
        #expect(error.message.contains("F_SEAL_SHRINK"))
    }

    @Test("a segment smaller than S + 8·C is refused", arguments: [12, 16, 16 + 8 * 3 - 1])
    func tooSmall(size: Int) async throws {
        let segment = TestSegment([1, 2, 3], size: size)
        try await expectRefused(#"{"numbersShm":"# + segment.json + "}", segment)
    }

    @Test("a segment of another user is refused", .enabled(if: geteuid() == 0, "only root can give a memfd away"))
    func owner() async throws {
        let segment = TestSegment([1, 2, 3])
        #expect(fchown(segment.descriptor, 4242, gid_t.max) == 0)
        try await expectRefused(#"{"numbersShm":"# + segment.json + "}", segment)
    }

    @Test("the opened fd is checked again by name: a reused fd number of another memfd is refused")
    func checkedAfterOpen() throws {
        let segment = TestSegment([1, 2])
        let other = TestSegment([1, 2])
        #expect(throws: Never.self) { try MappedSegment.checkOpened(segment.descriptor, segment.reference) }
        let error = try #require(throws: RPCError.self) { try MappedSegment.checkOpened(other.descriptor, segment.reference) }
        #expect(error.data == invalidShm)
    }

    @Test("a worker that does not serve shared memory answers numbersShm invalid_shape, however it is formed")
    func notServed() async throws {
        let segment = TestSegment([1, 2])
        for params in [#"{"numbersShm":"# + segment.json + "}", #"{"numbersShm":5}"#] {
            let error = try #require(try await answer(squares, params, in: sharedMemoryContext(parallelism: 2, served: false)).result.failure)
            #expect(error.data == .object(["reason": .string("invalid_shape")]))
        }
        #expect(segment.results == [0, 0])
    }

    @Test("a method with its own map and limit maps through shm, and refuses too_large with the index before writing",
          arguments: [4, 20_000])
    func cubes(count: Int) async throws {
        let cubes = RegisteredMethod(CalculateCubes())
        var values = (0..<count).map { UInt32($0 * 131 % 2_642_246) }
        values[count - 1] = 2_642_245
        let segment = TestSegment(values)
        let answered = try await answer(cubes, #"{"numbersShm":"# + segment.json + "}", in: sharedMemoryContext(parallelism: 3))
        #expect(try answered.result.get() == #"{"cubesShm":{"offset":\#(8 * ((count + 1) / 2)),"count":\#(count)}}"#)
        #expect(segment.results == values.map(Cubing.apply))
        values[count / 2] = 2_642_246
        values[count - 1] = UInt32.max
        let tooLarge = TestSegment(values)
        let error = try #require(try await answer(cubes, #"{"numbersShm":"# + tooLarge.json + "}", in: sharedMemoryContext(parallelism: 3)).result.failure)
        #expect(error.data == .object(["index": .integer(count / 2), "reason": .string("too_large")]))
        #expect(error.message.hasSuffix("is greater than 2642245"))
        #expect(tooLarge.results.allSatisfy { $0 == 0 })
        #expect(!tooLarge.isMapped)
    }

    @Test("a cancellation mid-map stops between slices and unmaps before the answer")
    func cancellation() async throws {
        let signal = CancellationSignal()
        Tripwire.signal.withLock { $0 = signal }
        defer { Tripwire.signal.withLock { $0 = nil } }
        let count = 4 * ParallelMap.sliceLength
        var values = [UInt32](repeating: 3, count: count)
        values[0] = Tripwire.trigger
        let segment = TestSegment(values)
        // Parallelism 1: one range, mapped slice by slice; the tripwire in the first slice fires
        // the signal and waits until the map's task is cancelled.
        let method = RegisteredMethod(TripwireSquares())
        await #expect(throws: CancellationError.self) {
            _ = try await answer(method, #"{"numbersShm":"# + segment.json + "}", in: sharedMemoryContext(parallelism: 1), signal: signal)
        }
        #expect(Tripwire.tripped.withLock { $0 }, "the tripwire was reached")
        let results = segment.results
        #expect(results[0] == square(Tripwire.trigger) && results[1] == 9, "the first slice is written")
        #expect(results[ParallelMap.sliceLength...].allSatisfy { $0 == 0 }, "the slices after the cancellation are not")
        #expect(!segment.isMapped, "unmapped before the answer")
    }
}

/// Squares, but the element `trigger` fires `signal` and waits for its task's cancellation.
enum Tripwire: ElementMap {
    static let trigger: UInt32 = 0xDEAD_BEEF
    static let signal = Locked<CancellationSignal?>(nil)
    static let tripped = Locked(false)

    static func apply(_ x: UInt32) -> UInt64 {
        if x == trigger {
            tripped.withLock { $0 = true }
            signal.withLock { $0 }?.fire()
            // Bounded, so that a broken cancellation fails the test instead of hanging it.
            let deadline = ContinuousClock.now + .seconds(60)
            while !Task.isCancelled && ContinuousClock.now < deadline { usleep(1_000) }
        }
        return square(x)
    }
}

/// `Tripwire` as an element-wise method: the cancellation path of a real shm request.
struct TripwireSquares: ElementwiseMethod {
    typealias Map = Tripwire
    static let name = "test/tripwire"
    static let packedResultKey = "squaresPacked"
    static let shmResultKey = "squaresShm"
}

extension Answered {
    var failure: RPCError? { result.failure }
}

@Suite("The shared-memory plane through the server", .enabled(if: ServerConfiguration.sharedMemoryAvailable))
struct SharedMemoryServerTests {
    func shm(_ id: Int, _ segment: TestSegment) -> String {
        request(id, "calculate_squares", #"{"numbersShm":"# + segment.json + "}")
    }

    func initialize(_ id: Int, prefix: String?) -> String {
        request(id, "initialize", prefix.map { #"{"shmPrefix":\#($0)}"# } ?? "{}")
    }

    func refused(_ id: Int) -> String {
        #"{"jsonrpc":"2.0","id":\#(id),"error":{"code":-32602"#
    }

    /// The reply to `id`, once `count` replies are written (frames may be answered out of order).
    func reply(_ harness: Harness, _ id: Int, of count: Int) async -> String? {
        await harness.replies(count).first { $0.hasPrefix(#"{"jsonrpc":"2.0","id":\#(id),"#) }
    }

    @Test("shmPrefix arms the plane; an invalid one is refused and changes nothing; the last valid one wins")
    func arming() async {
        let harness = Harness()
        let first = TestSegment.prefix + "first-", second = TestSegment.prefix + "second-"
        let a = TestSegment([2, 3], name: TestSegment.nextName(prefix: first))
        let b = TestSegment([4], name: TestSegment.nextName(prefix: second))
        harness.send(shm(1, a))
        #expect(await reply(harness, 1, of: 1)?.hasPrefix(refused(1)) == true, "no prefix yet")
        harness.send(initialize(2, prefix: "\"\(first)\""))
        #expect(await reply(harness, 2, of: 2)?.contains(#""encodings":["json","packed","shm"]"#) == true)
        harness.send(shm(3, a))
        #expect(await reply(harness, 3, of: 3) == #"{"jsonrpc":"2.0","id":3,"result":{"squaresShm":{"offset":8,"count":2}}}"#)
        #expect(a.results == [4, 9])
        var id = 4
        for invalid in ["5", "\"\"", "null", "true", "\"a/b\"", "\"a b\"", "\"\u{e9}\"", "\"\(String(repeating: "a", count: 201))\"", "[\"a\"]"] {
            harness.send(initialize(id, prefix: invalid))
            let answer = await reply(harness, id, of: id)
            #expect(answer?.hasPrefix(refused(id)) == true && answer?.hasSuffix(#""data":{"reason":"invalid_shm"}}}"#) == true, "\(invalid): \(answer ?? "")")
            id += 1
        }
        harness.send(initialize(id, prefix: nil))
        harness.send(shm(id + 1, a))
        #expect(await reply(harness, id + 1, of: id + 1)?.contains(#""result":{"squaresShm""#) == true, "the first prefix still armed")
        harness.send(initialize(id + 2, prefix: "\"\(second)\""))
        harness.send(shm(id + 3, a))
        harness.send(shm(id + 4, b))
        #expect(await reply(harness, id + 3, of: id + 4)?.hasPrefix(refused(id + 3)) == true, "a replaced prefix is not armed")
        #expect(await reply(harness, id + 4, of: id + 4) == #"{"jsonrpc":"2.0","id":\#(id + 4),"result":{"squaresShm":{"offset":8,"count":1}}}"#)
        #expect(b.results == [16])
        harness.send(initialize(id + 5, prefix: "\"\(String(repeating: "a", count: 200))\""))
        #expect(await reply(harness, id + 5, of: id + 5)?.contains(#""result":{"protocolVersion":"1.2""#) == true)
        #expect(await harness.finish() == .success)
    }

    @Test("an initialize earlier in the batch arms the requests after it, not those before")
    func batchOrder() async {
        let harness = Harness()
        let a = TestSegment([5]), b = TestSegment([6])
        harness.send("[" + shm(1, a) + "," + initialize(2, prefix: "\"\(TestSegment.prefix)\"") + "," + shm(3, b) + "]")
        let reply = await harness.replies(1).first ?? ""
        #expect(reply.hasPrefix("[" + refused(1)))
        #expect(reply.hasSuffix(#"{"jsonrpc":"2.0","id":3,"result":{"squaresShm":{"offset":8,"count":1}}}]"#))
        #expect(a.results == [0] && b.results == [36])
        #expect(await harness.finish() == .success)
    }

    @Test("a notification writes its squares, small or big; a batch answers after it ran", arguments: [3, 50_000])
    func notification(count: Int) async {
        let harness = Harness()
        let values = (0..<count).map { UInt32($0) &* 2_654_435_761 }
        let silent = TestSegment(values), answered = TestSegment([7])
        harness.send(initialize(1, prefix: "\"\(TestSegment.prefix)\""))
        _ = await harness.replies(1)
        let notification = #"{"jsonrpc":"2.0","method":"calculate_squares","params":{"numbersShm":\#(silent.json)}}"#
        harness.send("[" + notification + "," + shm(2, answered) + "]")
        #expect(await harness.replies(2).last == #"[{"jsonrpc":"2.0","id":2,"result":{"squaresShm":{"offset":8,"count":1}}}]"#)
        #expect(silent.results == values.map { UInt64($0) * UInt64($0) })
        #expect(!silent.isMapped)
        #expect(await harness.finish() == .success)
        #expect(harness.writer.written.count == 2)
    }
}
