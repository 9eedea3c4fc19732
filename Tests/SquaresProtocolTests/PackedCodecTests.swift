import Testing
@testable import SquaresCore
@testable import SquaresProtocol

/// Standard padded base64 of `bytes` (a small independent encoder, to check the codec against).
func base64(_ bytes: [UInt8]) -> String {
    let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    var out: [UInt8] = []
    for start in stride(from: 0, to: bytes.count, by: 3) {
        let chunk = Array(bytes[start..<min(start + 3, bytes.count)]) + [0, 0]
        let n = UInt32(chunk[0]) << 16 | UInt32(chunk[1]) << 8 | UInt32(chunk[2])
        let kept = min(3, bytes.count - start) + 1
        for i in 0..<4 { out.append(i < kept ? alphabet[Int(n >> (18 - 6 * UInt32(i)) & 63)] : UInt8(ascii: "=")) }
    }
    return String(decoding: out, as: UTF8.self)
}

func littleEndianBytes<T: FixedWidthInteger>(_ values: [T]) -> [UInt8] {
    values.flatMap { value in (0..<T.bitWidth / 8).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }
}

@Suite("Packed codec")
struct PackedCodecTests {
    @Test("the spec's example: [1, 2, 4294967295] is AQAAAAIAAAD/////")
    func specExample() async throws {
        #expect(base64(littleEndianBytes([UInt32(1), 2, UInt32.max])) == "AQAAAAIAAAD/////")
        #expect(try await PackedCodec.decodeNumbers("AQAAAAIAAAD/////", parallelism: 2).array == [1, 2, UInt32.max])
    }

    @Test("decode, square and encode round trip for sizes around the piece boundaries", arguments: [
        0, 1, 2, 3, 4, 5, 11, 12, 13, 16_383, 16_384, 16_385, 49_151, 49_152, 49_153, 100_001,
    ])
    func roundTrip(count: Int) async throws {
        var generator = SystemRandomNumberGenerator()
        let numbers = (0..<count).map { _ in UInt32.random(in: 0...UInt32.max, using: &generator) }
        let text = base64(littleEndianBytes(numbers))
        for parallelism in [1, 2, 5] {
            let decoded = try await PackedCodec.decodeNumbers(text, parallelism: parallelism)
            #expect(decoded.array == numbers, "decode, parallelism \(parallelism)")
            let squares = try await ParallelMap(parallelism: parallelism).map(decoded, through: Squaring.self)
            let encoded = try await PackedCodec.encode(squares, parallelism: parallelism)
            let expected = base64(littleEndianBytes(numbers.map { UInt64($0) * UInt64($0) }))
            #expect(String(decoding: encoded.joined(), as: UTF8.self) == expected, "encode, parallelism \(parallelism)")
        }
    }

    @Test("anything but padded base64 of whole UInt32s is refused", arguments: [
        "A", "AA", "AAA", "AAAAA", "AAAAAAA=", "AAAAAAAAAA==", "AQAAAA=A", "AA=AAAAA", "AAA*", "AQAAAAIAAAD////", "====", "AQ==AAAA",
        "AAAAAAAAAA=A", "AQAAAAIAAA=B", "BwAAAB==", "AQAAAAIAAAB=",
    ])
    func invalid(text: String) async {
        await #expect(throws: PackedCodec.Invalid.self) { _ = try await PackedCodec.decodeNumbers(text, parallelism: 2) }
    }

    @Test("padding in the middle of a big input is refused, however it is split")
    func paddingInTheMiddle() async {
        var text = Array(base64(littleEndianBytes([UInt32](repeating: 7, count: 90_000))).utf8)
        text[100_000 - 1] = UInt8(ascii: "=")
        let broken = String(decoding: text, as: UTF8.self)
        for parallelism in [1, 2, 3] {
            await #expect(throws: PackedCodec.Invalid.self) { _ = try await PackedCodec.decodeNumbers(broken, parallelism: parallelism) }
        }
    }
}
