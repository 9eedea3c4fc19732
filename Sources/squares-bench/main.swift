// Release benchmark of the squaring core and the integer-array codec, with Foundation's Codable
// as the baseline in the same process and run. Run: swift run -c release squares-bench [count]
import Foundation
import SquaresCore
import SquaresProtocol

struct Options {
    var count = 1_000_000
    var repetitions = 15
    var parallelism = ProcessInfo.processInfo.activeProcessorCount
    var codable = true
}

var options = Options()
var arguments = CommandLine.arguments.dropFirst()
while let argument = arguments.popFirst() {
    switch argument {
    case "--count": options.count = Int(arguments.popFirst() ?? "") ?? options.count
    case "--repetitions": options.repetitions = Int(arguments.popFirst() ?? "") ?? options.repetitions
    case "--parallelism": options.parallelism = Int(arguments.popFirst() ?? "") ?? options.parallelism
    case "--skip-codable": options.codable = false
    default:
        print("usage: squares-bench [--count N] [--repetitions N] [--parallelism N]")
        exit(2)
    }
}

/// The median wall time of `repetitions` runs of `body`, in seconds.
func median(_ repetitions: Int, _ body: () async throws -> Void) async rethrows -> Double {
    var times: [Double] = []
    for _ in 0..<repetitions {
        let start = DispatchTime.now().uptimeNanoseconds
        try await body()
        times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
    }
    return times.sorted()[times.count / 2]
}

func report(_ name: String, _ seconds: Double, per count: Int, baseline: Double? = nil) {
    let ns = seconds * 1e9 / Double(count)
    var line = name.padding(toLength: 52, withPad: " ", startingAt: 0) + String(format: "%9.2f ms %8.2f ns/number", seconds * 1e3, ns)
    if let baseline { line += String(format: "   %6.1fx faster than Codable", baseline / seconds) }
    print(line)
}

var generator = SystemRandomNumberGenerator()
let numbers = (0..<options.count).map { _ in UInt32.random(in: 0...UInt32.max, using: &generator) }
let requestText = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"calculate_squares\",\"params\":{\"numbers\":["
    + numbers.map(String.init).joined(separator: ", ") + "]}}"  // as Python's json.dumps writes it
let request = Array(requestText.utf8)
let count = options.count
print("squares-bench: \(count) random UInt32, request \(request.count) bytes, parallelism \(options.parallelism), median of \(options.repetitions)")

// MARK: Foundation Codable baseline

struct CodableRequest: Codable { struct Params: Codable { var numbers: [UInt32] }; var jsonrpc: String; var id: Int; var method: String; var params: Params }
struct CodableResponse: Codable { var jsonrpc: String; var id: Int; var result: [UInt64] }

let requestData = Data(request)
let decoded = try JSONDecoder().decode(CodableRequest.self, from: requestData)
let codableRepetitions = options.codable ? max(3, options.repetitions / 3) : 1
let codableDecode = try await median(codableRepetitions) {
    _ = try JSONDecoder().decode(CodableRequest.self, from: requestData)
}
let codableSquares = decoded.params.numbers.map(square)
let codableEncode = try await median(codableRepetitions) {
    _ = try JSONEncoder().encode(CodableResponse(jsonrpc: "2.0", id: 1, result: codableSquares))
}
let codableTotal = codableDecode + codableEncode
report("Foundation JSONDecoder (request)", codableDecode, per: count)
report("Foundation JSONEncoder (reply)", codableEncode, per: count)
report("Foundation Codable decode + square + encode", codableTotal, per: count)

// MARK: This codec

let frame = FrameBytes(request)
func serve(parallelism: Int) async throws -> Int {
    let parsed = try await JSONReader().parse(frame, parallelism: parallelism)
    let segments = try await IntegerArrayCodec.encode(numbers(in: parsed), mapping: Squaring.self, parallelism: parallelism)
    return OutboundFrame(.success(id: .integer(1), result: .encoded(segments))).byteCount
}

/// The decoded `numbers` of the benchmark's request.
func numbers(in parsed: JSONValue) -> IntegerArray {
    guard case .object(let request) = parsed, case .object(let params)? = request["params"],
          case .integers(let array)? = params["numbers"] else { fatalError("not the benchmark's request") }
    return array
}

// Check the fast path against Foundation's output before timing it.
let expected = try JSONEncoder().encode(codableSquares)
let parsedOnce = try await JSONReader().parse(frame, parallelism: options.parallelism)
let produced = [UInt8]("[".utf8) + (try await IntegerArrayCodec.encode(numbers(in: parsedOnce), mapping: Squaring.self, parallelism: options.parallelism)).joined() + [UInt8]("]".utf8)
precondition(produced == [UInt8](expected), "fast codec output differs from JSONEncoder's")

let arrayStart = request.firstIndex(of: UInt8(ascii: "["))! + 1
let scan = await median(options.repetitions) {
    precondition(request.withUnsafeBufferPointer { IntegerArrayCodec.scanIntegerArray($0, from: arrayStart) } != nil)
}
let oneCore = try await median(options.repetitions) { _ = try await serve(parallelism: 1) }
let allCores = try await median(options.repetitions) { _ = try await serve(parallelism: options.parallelism) }
let parseOnly = try await median(options.repetitions) { _ = try JSONReader().parse(frame) }
let parsedArray = numbers(in: parsedOnce)
let encodeOnly = try await median(options.repetitions) { _ = try await IntegerArrayCodec.encode(parsedArray, mapping: Squaring.self, parallelism: 1) }
report("fast path: scan only (sequential)", scan, per: count)
report("fast path: parse (scan + decode), 1 core", parseOnly, per: count)
report("fast path: square + encode, 1 core", encodeOnly, per: count)
let parseAll = try await median(options.repetitions) { _ = try await JSONReader().parse(frame, parallelism: options.parallelism) }
let encodeAll = try await median(options.repetitions) { _ = try await IntegerArrayCodec.encode(parsedArray, mapping: Squaring.self, parallelism: options.parallelism) }
report("fast path: parse (scan + decode), \(options.parallelism) cores", parseAll, per: count)
report("fast path: square + encode, \(options.parallelism) cores", encodeAll, per: count)
report("fast path: decode + square + encode, 1 core", oneCore, per: count, baseline: codableTotal)
report("fast path: decode + square + encode, \(options.parallelism) cores", allCores, per: count, baseline: codableTotal)

// MARK: The core alone, and the inline/parallel threshold

let buffer = OwnedBuffer(numbers)
let coreSequential = try await median(options.repetitions) { _ = try await ParallelMap(parallelism: 1).map(buffer, through: Squaring.self) }
let coreParallel = try await median(options.repetitions) { _ = try await ParallelMap(parallelism: options.parallelism).map(buffer, through: Squaring.self) }
report("core: squares, 1 core", coreSequential, per: count)
report("core: squares, \(options.parallelism) cores", coreParallel, per: count)
print("core threshold (inline vs task group, µs):")
for size in [4_096, 16_384, 32_768, 65_536, 131_072] {
    let small = OwnedBuffer(numbers.prefix(size))
    let inline = try await median(101) { _ = try await ParallelMap(parallelism: 1).map(small, through: Squaring.self) }
    let grouped = try await median(101) { _ = try await ParallelMap(parallelism: options.parallelism, parallelThreshold: 1).map(small, through: Squaring.self) }
    print(String(format: "  %7d numbers: inline %8.1f  group %8.1f", size, inline * 1e6, grouped * 1e6))
}
