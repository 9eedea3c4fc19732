/// RFC 4648 base64 (standard alphabet, `=` padding) decoded the obvious way, as the reference for
/// `PackedCodec`. Whether bits left over in the last character must be zero is left to
/// implementations by the RFC, so the model reports them instead of deciding.
enum Base64Model {
    static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    struct Decoded: Equatable {
        var bytes: [UInt8]
        /// The leftover bits of the last character were all zero.
        var canonical: Bool
    }

    /// The bytes of `text`, or nil if it is not padded base64.
    static func decode(_ text: some Collection<UInt8>) -> Decoded? {
        let characters = Array(text)
        guard characters.count % 4 == 0 else { return nil }
        let padding = characters.suffix(2).reversed().prefix { $0 == UInt8(ascii: "=") }.count
        var bytes: [UInt8] = []
        var accumulator: UInt32 = 0
        var bits = 0
        for character in characters.dropLast(padding) {
            guard let value = alphabet.firstIndex(of: character) else { return nil }
            accumulator = accumulator << 6 | UInt32(value)
            bits += 6
            if bits >= 8 {
                bits -= 8
                bytes.append(UInt8(truncatingIfNeeded: accumulator >> UInt32(bits)))
                accumulator &= (1 << UInt32(bits)) - 1
            }
        }
        // Padding must complete the last quantum: "xx==" or "xxx=" only.
        guard padding == 0 || (characters.count - padding) % 4 == 4 - padding else { return nil }
        return Decoded(bytes: bytes, canonical: accumulator == 0)
    }

    static func encode(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        var i = 0
        while i < bytes.count {
            let chunk = bytes[i..<min(i + 3, bytes.count)]
            let value = chunk.enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (16 - 8 * UInt32($1.offset)) }
            for k in 0..<4 {
                out.append(k <= chunk.count ? alphabet[Int(value >> (18 - 6 * UInt32(k)) & 63)] : UInt8(ascii: "="))
            }
            i += 3
        }
        return out
    }
}
