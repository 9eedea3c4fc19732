@testable import SquaresProtocol
import SquaresCore
import Testing
@testable import SquaresServer

/// A map the product does not have, to check that an element-wise method is its name, its map,
/// its packed member and its limit, and nothing else: cubes fit a `UInt64` up to 2642245.
enum Cubing: ElementMap {
    static func apply(_ x: UInt32) -> UInt64 { UInt64(x) * UInt64(x) * UInt64(x) }
}

struct CalculateCubes: ElementwiseMethod {
    typealias Map = Cubing
    static let name = "test/calculate_cubes"
    static let packedResultKey = "cubesPacked"
    static let shmResultKey = "cubesShm"
    static let maxElement: UInt32 = 2_642_245
}

@Suite("an element-wise method given only its name, map and limit")
struct ElementwiseMethodTests {
    let context = MethodContext(configuration: ServerConfiguration(parallelism: 3), methodNames: [])
    let method = RegisteredMethod(CalculateCubes())

    /// The result's JSON text, or the error, for `params` (JSON text) as the server would compute
    /// them. Big arrays are decoded in 3 pieces.
    func answer(_ params: String) async throws -> Result<String, RPCError> {
        try await SquaresServerTests.answer(method, params, in: context).result
    }

    func cubes(_ numbers: [UInt32]) -> String {
        "[" + numbers.map { String(Cubing.apply($0)) }.joined(separator: ",") + "]"
    }

    /// `numbers` as the packed encoding's base64 text: pairs of little-endian `UInt32`s are the
    /// little-endian `UInt64`s the codec's encoder takes (so `numbers` has an even count).
    func packed(_ numbers: [UInt32]) async throws -> String {
        let pairs = stride(from: 0, to: numbers.count, by: 2).map { UInt64(numbers[$0]) | UInt64(numbers[$0 + 1]) << 32 }
        return try await String(decoding: PackedCodec.encode(OwnedBuffer(pairs), parallelism: 1).joined(), as: UTF8.self)
    }

    @Test("small and big arrays, JSON and packed, map through the method's own map", arguments: [4, 20_000])
    func mapped(count: Int) async throws {
        let numbers = (0..<count).map { UInt32($0 * 131 % 2_642_246) } + [2_642_245, 0]
        let json = try await answer(#"{"numbers":["# + numbers.map(String.init).joined(separator: ",") + "]}")
        #expect(try json.get() == cubes(numbers))
        let reply = try await answer(#"{"numbersPacked":""# + (try await packed(numbers)) + #""}"#).get()
        let expected = try await String(decoding: PackedCodec.encode(OwnedBuffer(numbers.map(Cubing.apply)), parallelism: 1).joined(), as: UTF8.self)
        #expect(reply == #"{"cubesPacked":""# + expected + #""}"#)
    }

    @Test("an element above the method's limit is the first bad element when it comes first", arguments: [
        ("[1, 2642246, -1]", 1, "too_large"), ("[1, -1, 2642246]", 1, "negative"),
        ("[2642246, 4294967296]", 0, "too_large"), ("[5, 4294967296, 2642246]", 1, "too_large"),
        ("[2642246, 1.5]", 0, "too_large"), ("[1.5, 2642246]", 0, "not_an_integer"),
    ])
    func limit(array: String, index: Int, reason: String) async throws {
        let error = try #require(try await answer(#"{"numbers":"# + array + "}").failure)
        #expect(error.data == .object(["index": .integer(index), "reason": .string(reason)]), "\(array)")
        if reason == "too_large" { #expect(error.message.hasSuffix("is greater than 2642245"), "\(error.message)") }
    }

    @Test("the limit holds in a big array split into pieces, and in packed input", arguments: [20_000, 100_001])
    func limitInBigInput(at index: Int) async throws {
        var numbers = [UInt32](repeating: 7, count: 200_000)
        numbers[index] = 2_642_246
        numbers[150_000] = 4_294_967_295  // a second element above the limit, after the first
        // And the decoder's own problem (-1) last, in the last piece.
        let json = try await answer(#"{"numbers":["# + numbers.map(String.init).joined(separator: ",") + ",-1]}")
        #expect(json.failure?.data == .object(["index": .integer(index), "reason": .string("too_large")]))
        let packedReply = try await answer(#"{"numbersPacked":""# + (try await packed(numbers)) + #""}"#)
        #expect(packedReply.failure?.data == .object(["index": .integer(index), "reason": .string("too_large")]))
    }

    @Test("calculate_squares keeps the whole UInt32 range")
    func squaresLimit() {
        #expect(CalculateSquares.maxElement == UInt32.max)
        #expect(CalculateSquares.firstProblem(IntegerArray(pieces: [[UInt32.max]], count: 1, firstProblem: nil)) == nil)
    }
}

extension Result {
    var failure: Failure? { if case .failure(let error) = self { error } else { nil } }
}
