import ExtrasBase64
import SquaresCore

/// The packed encoding (protocol 1.1): `numbersPacked` is standard, padded base64 of the numbers
/// as little-endian `UInt32`s, and the reply's `squaresPacked` is base64 of the results as
/// little-endian `UInt64`s. It costs the client one C-level pass each way instead of a JSON list,
/// and it needs no per-element validation here: every 4 bytes are a valid `UInt32`.
///
/// Base64 is swift-extras-base64's; this file only splits the work across cores: a block of
/// 12 input bytes is 16 characters, so pieces cut at multiples of 16 characters (or of 3 elements
/// on the way out) decode and encode independently.
public enum PackedCodec {
    /// Why a `numbersPacked` string was refused.
    public struct Invalid: Error, Sendable, Equatable {
        public var detail: String
    }

    /// Pieces smaller than this are not worth a child task.
    static let minimumPieceCharacters = 1 << 16

    /// The numbers encoded in `text`, in order, decoded in up to `parallelism` pieces.
    /// - Throws: `Invalid` for anything but padded standard base64 of a multiple of 4 bytes.
    public static func decodeNumbers(_ text: String, parallelism: Int) async throws(Invalid) -> OwnedBuffer<UInt32> {
        var text = text
        text.makeContiguousUTF8()
        let byteCount = try decodedByteCount(text)
        let characters = text.utf8.count
        let output = OwnedBuffer<UInt32>(uninitializedCount: byteCount / 4)
        // Piece boundaries fall on 16-character blocks, so each piece is 12·k bytes (3·k numbers).
        let blocks = max(characters / 16, 1)
        let parts = max(1, min(parallelism, characters / minimumPieceCharacters))
        let ranges = partition(count: blocks, parallelism: parts, minimumLength: 1).map { range in
            (range.lowerBound * 16)..<(range.upperBound == blocks ? characters : range.upperBound * 16)
        }
        let frozen = text
        let problems: [String?]
        do {
            problems = try await forEachRange(ranges.indices.map { $0..<$0 + 1 }) { index -> String? in
                decode(frozen, range: ranges[index.lowerBound], byteCount: byteCount, into: output)
            }
        } catch {
            preconditionFailure("forEachRange rethrows only what the body throws, and it throws nothing: \(error)")
        }
        if let problem = problems.compactMap({ $0 }).first { throw Invalid(detail: problem) }
        return output
    }

    /// About how many numbers `text` encodes (for a size policy; exact for valid text).
    public static func approximateCount(_ text: String) -> Int { text.utf8.count / 4 * 3 / 4 }

    /// The byte count that `text`'s length and padding announce.
    static func decodedByteCount(_ text: String) throws(Invalid) -> Int {
        let characters = text.utf8.count
        guard characters % 4 == 0 else { throw Invalid(detail: "base64 length \(characters) is not a multiple of 4") }
        let tail = Array(text.utf8.suffix(2))
        // `xx=y` would decode without complaint from the library: padding only ends the text.
        if tail.count == 2 && tail[0] == UInt8(ascii: "=") && tail[1] != UInt8(ascii: "=") {
            throw Invalid(detail: "misplaced padding")
        }
        let padding = tail.filter { $0 == UInt8(ascii: "=") }.count
        let byteCount = characters / 4 * 3 - padding
        guard byteCount % 4 == 0 else { throw Invalid(detail: "\(byteCount) bytes is not a whole number of UInt32s") }
        // The bits of the last character before the padding that carry no data must be zero
        // (SPEC §4): otherwise two texts would decode to the same numbers.
        if padding > 0, let last = text.utf8.dropLast(padding).last, let value = base64Value(last),
           value & (padding == 2 ? 0x0F : 0x03) != 0 {
            throw Invalid(detail: "non-zero pad bits")
        }
        return byteCount
    }

    /// The 6-bit value of a character of the standard alphabet.
    static func base64Value(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): c - UInt8(ascii: "A")
        case UInt8(ascii: "a")...UInt8(ascii: "z"): c - UInt8(ascii: "a") + 26
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0") + 52
        case UInt8(ascii: "+"): 62
        case UInt8(ascii: "/"): 63
        default: nil
        }
    }

    /// Decodes the characters `range` of `text` (a multiple of 16 characters, or the end) into
    /// their place in `output`; returns what is wrong, if anything.
    static func decode(_ text: String, range: Range<Int>, byteCount: Int, into output: OwnedBuffer<UInt32>) -> String? {
        text.utf8.withContiguousStorageIfAvailable { utf8 -> String? in
            guard let bytes = try? Base64.decode(bytes: utf8[range]) else { return "invalid base64" }
            let start = range.lowerBound / 4 * 3
            let expected = range.upperBound == utf8.count ? byteCount - start : range.count / 4 * 3
            guard bytes.count == expected else { return "misplaced padding" }
            let target = UnsafeMutableRawBufferPointer(output.storage)
            UnsafeMutableRawBufferPointer(rebasing: target[start..<start + bytes.count]).copyBytes(from: bytes)
            #if _endian(big)
            for i in start / 4..<(start + bytes.count) / 4 { output.storage[i] = UInt32(littleEndian: output.storage[i]) }
            #endif
            return nil
        } ?? "not contiguous"
    }

    /// The base64 text of `values` as little-endian `UInt64`s, in segments to write in order,
    /// encoded in up to `parallelism` pieces.
    public static func encode(_ values: OwnedBuffer<UInt64>, parallelism: Int) async throws -> [[UInt8]] {
        #if _endian(big)
        for i in values.storage.indices { values.storage[i] = values.storage[i].littleEndian }
        #endif
        let count = values.count
        // Whole groups of 3 elements (24 bytes, 32 characters) per piece, so only the last pads.
        let groups = (count + 2) / 3
        let parts = max(1, min(parallelism, count * 8 / minimumPieceCharacters))
        let ranges = partition(count: max(groups, 1), parallelism: parts, minimumLength: 1).map { range in
            (range.lowerBound * 3)..<min(count, range.upperBound * 3)
        }
        return try await forEachRange(ranges.indices.map { $0..<$0 + 1 }) { index in
            try Task.checkCancellation()
            let range = ranges[index.lowerBound]
            let bytes = UnsafeRawBufferPointer(UnsafeMutableBufferPointer(rebasing: values.storage[range]))
            return Base64.encodeToBytes(bytes: bytes)
        }
    }
}
