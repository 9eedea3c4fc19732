import SquaresCore
import Testing
@testable import SquaresProtocol

/// Parses `text` as a whole frame (single-core and multi-core readers must agree).
func parse(_ text: String, parallelism: Int = 1, parallelSpanBytes: Int = 256 * 1024) async throws(JSONParseError) -> JSONValue {
    try await JSONReader(parallelSpanBytes: parallelSpanBytes).parse(Array(text.utf8), parallelism: parallelism)
}

/// The integer array `arrayText`, parsed as the member of an object, or its first bad element.
func numbers(_ arrayText: String, parallelism: Int = 1, parallelSpanBytes: Int = 256 * 1024) async throws -> Result<IntegerArray, ElementProblem> {
    let frame = try await parse("{\"numbers\":\(arrayText)}", parallelism: parallelism, parallelSpanBytes: parallelSpanBytes)
    guard case .object(let object) = frame, case .integers(let decoded)? = object["numbers"] else {
        throw CancellationError()  // not an integer array: the test fails
    }
    if let problem = decoded.firstProblem { return .failure(problem) }
    return .success(decoded)
}

extension ElementProblem: Error {}

func problem(_ result: Result<IntegerArray, ElementProblem>) -> JSONValue? {
    if case .failure(let problem) = result { return .object(["index": .integer(problem.index), "reason": .string(problem.reason.rawValue)]) }
    return nil
}

/// `IntegerArrayCodec.encode`'s map for these tests.
enum Squared: ElementMap {
    static func apply(_ x: UInt32) -> UInt64 { UInt64(x) * UInt64(x) }
}

@Suite("Integer array codec")
struct IntegerArrayCodecTests {
    @Test("decoding then encoding squares matches Swift's own formatting, one piece or many")
    func roundTrip() async throws {
        var generator = SystemRandomNumberGenerator()
        let edges: [UInt32] = [0, 1, 9, 10, 99, 100, 9999, 10_000, 65_535, 65_536, 99_999_999, 100_000_000, 4_294_967_295]
        let values = edges + (0..<5000).map { _ in UInt32.random(in: 0...UInt32.max, using: &generator) >> UInt32.random(in: 0...31, using: &generator) }
        let text = "[" + values.map(String.init).joined(separator: ",") + "]"
        for (parallelism, span) in [(1, Int.max), (2, 1), (3, 1), (7, 1)] {
            let array = try await numbers(text, parallelism: parallelism, parallelSpanBytes: span).get()
            #expect(array.elements == values)
            #expect(array.count == values.count)
            let segments = try await IntegerArrayCodec.encode(array, mapping: Squared.self, parallelism: parallelism)
            let encoded = String(decoding: segments.joined(), as: UTF8.self)
            #expect(encoded == values.map { String(UInt64($0) * UInt64($0)) }.joined(separator: ","), "parallelism \(parallelism)")
        }
    }

    @Test("4294967295 squared is exactly 18446744065119617025")
    func exactness() {
        let encoded = [UInt32.max].withUnsafeBufferPointer { IntegerArrayCodec.encode($0, leadingComma: false, mapping: Squared.self) }
        #expect(String(decoding: encoded, as: UTF8.self) == "18446744065119617025")
    }

    @Test("every digit count encodes exactly")
    func digitCounts() {
        var value: UInt64 = 1
        for _ in 0..<20 {
            for candidate in [value - 1, value, value + 1, value / 10 * 9] where candidate <= UInt64(UInt32.max) * UInt64(UInt32.max) {
                var out = [UInt8](repeating: 0, count: 32)
                let n = out.withUnsafeMutableBufferPointer { IntegerArrayCodec.writeDecimal(candidate, to: $0.baseAddress!) - $0.baseAddress! }
                #expect(String(decoding: out[0..<n], as: UTF8.self) == String(candidate))
            }
            value = value &* 10
        }
    }

    @Test("the eight-digit kernels agree with plain arithmetic")
    func eightDigitKernels() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            let x = UInt32.random(in: 0..<100_000_000, using: &generator)
            let padded = String(repeating: "0", count: 8 - String(x).count) + String(x)
            let word = IntegerArrayCodec.eightDigits(x)
            #expect(withUnsafeBytes(of: word.littleEndian) { Array($0) } == Array(padded.utf8))
            let count = Int.random(in: 1...8, using: &generator)
            let digits = Array(padded.utf8.prefix(count)) + [UInt8](",,,,,,,,".utf8).prefix(8 - count)
            let loaded = digits.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
            #expect(IntegerArrayCodec.eightDigitValue(UInt64(littleEndian: loaded), count: count) == UInt64(String(padded.prefix(count)))!)
        }
    }

    @Test("JSON whitespace is allowed wherever the grammar allows it", arguments: [
        "[ 1 , 2 ,3 ]", "[\n1,\t2\r,\n3]", "[1,2,3]", "[  1,2,  3\n\n]",
    ])
    func whitespace(text: String) async throws {
        #expect(try await numbers(text).get().elements == [1, 2, 3])
    }

    @Test("empty arrays, with or without whitespace", arguments: ["[]", "[ ]", "[\n\t]"])
    func empty(text: String) async throws {
        let array = try await numbers(text).get()
        #expect(array.count == 0 && array.elements.isEmpty)
    }

    @Test("malformed integer arrays are parse errors, however they are split", arguments: [
        "[1,,2]", "[,1]", "[1,]", "[01]", "[-]", "[1 2]", "[--1]", "[1-2]", "[-01]", "[00]", "[1,2,,]", "[ , ]", "[1,2 3,4]",
    ])
    func malformed(text: String) async {
        for span in [1, Int.max] {
            await #expect(throws: JSONParseError.self, "\(text) split at \(span)") {
                _ = try await parse("{\"numbers\":\(text)}", parallelism: 3, parallelSpanBytes: span)
            }
        }
    }

    // Arrays with an element that is not an integer take the general path: see the server's
    // CalculateSquaresTests.
    @Test("the first bad element is named with its reason", arguments: [
        ("[1,-1]", 1, "negative"), ("[4294967296]", 0, "too_large"), ("[-99999999999999999999]", 0, "negative"),
        ("[99999999999999999999999]", 0, "too_large"), ("[1,2,4294967295,4294967296,-5]", 3, "too_large"),
    ])
    func firstProblem(text: String, index: Int, reason: String) async throws {
        for span in [1, Int.max] {
            let data = problem(try await numbers(text, parallelism: 2, parallelSpanBytes: span))
            #expect(data == .object(["index": .integer(index), "reason": .string(reason)]), "\(text)")
        }
    }

    @Test("-0 is the integer zero")
    func negativeZero() async throws {
        #expect(try await numbers("[-0, 0]").get().elements == [0, 0])
    }

    @Test("a problem in a later piece is indexed from the array's start")
    func problemAcrossPieces() async throws {
        let values = (0..<10_000).map { $0 == 7777 ? "-3" : String($0) }
        let data = problem(try await numbers("[" + values.joined(separator: ",") + "]", parallelism: 4, parallelSpanBytes: 1))
        #expect(data == .object(["index": .integer(7777), "reason": .string("negative")]))
    }

    @Test("piece boundaries fall just after commas and cover the span")
    func pieceRanges() {
        let text = Array("1,22,333,4444,55555".utf8)
        text.withUnsafeBufferPointer { bytes in
            for parts in 1...8 {
                let ranges = IntegerArrayCodec.pieceRanges(bytes, span: 0..<bytes.count, parts: parts)
                #expect(ranges.first?.lowerBound == 0 && ranges.last?.upperBound == bytes.count)
                #expect(zip(ranges, ranges.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound && bytes[$0.upperBound - 1] == UInt8(ascii: ",") })
            }
        }
    }

    @Test("the scan stops at the closing bracket or gives up at any other byte")
    func scan() {
        func scan(_ text: String) -> Int? { Array(text.utf8).withUnsafeBufferPointer { IntegerArrayCodec.scanIntegerArray($0, from: 0) } }
        #expect(scan("1,2,3]") == 5)
        #expect(scan("12345678901234567890,1]") == 22)
        #expect(scan(" -1 ,\n2\t]x") == 8)
        #expect(scan("1,2.5]") == nil)
        #expect(scan("1,2,3") == nil)
        #expect(scan("11111111111111111111\"]") == nil)
        #expect(scan("1111111111111111111é]") == nil)
    }
}
