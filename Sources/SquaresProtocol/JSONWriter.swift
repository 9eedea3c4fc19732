/// Writes JSON text. Numbers are written from their source text, strings with the escapes JSON
/// requires (and no others), so a value read by `JSONReader` is written back the same.
struct JSONWriter {
    private(set) var bytes: [UInt8] = []

    mutating func append(raw: String) { bytes.append(contentsOf: raw.utf8) }
    mutating func append(raw: [UInt8]) { bytes.append(contentsOf: raw) }

    /// Writes `value`.
    mutating func write(_ value: JSONValue) {
        switch value {
        case .null: append(raw: "null")
        case .bool(let flag): append(raw: flag ? "true" : "false")
        case .number(let text): append(raw: text)
        case .string(let text): write(string: text)
        case .array(let elements):
            bytes.append(UInt8(ascii: "["))
            for (i, element) in elements.enumerated() {
                if i > 0 { bytes.append(UInt8(ascii: ",")) }
                write(element)
            }
            bytes.append(UInt8(ascii: "]"))
        case .object(let object):
            bytes.append(UInt8(ascii: "{"))
            for (i, member) in object.members.enumerated() {
                if i > 0 { bytes.append(UInt8(ascii: ",")) }
                write(string: member.key)
                bytes.append(UInt8(ascii: ":"))
                write(member.value)
            }
            bytes.append(UInt8(ascii: "}"))
        case .integers(let array):
            bytes.append(UInt8(ascii: "["))
            append(raw: array.elements.map(String.init).joined(separator: ","))
            bytes.append(UInt8(ascii: "]"))
        }
    }

    mutating func write(string: String) {
        bytes.append(UInt8(ascii: "\""))
        for byte in string.utf8 {
            switch byte {
            case UInt8(ascii: "\""): append(raw: "\\\"")
            case UInt8(ascii: "\\"): append(raw: "\\\\")
            case 0x0A: append(raw: "\\n")
            case 0x0D: append(raw: "\\r")
            case 0x09: append(raw: "\\t")
            case 0x08: append(raw: "\\b")
            case 0x0C: append(raw: "\\f")
            case 0..<0x20:
                let hex: [UInt8] = Array("0123456789abcdef".utf8)
                append(raw: [UInt8(ascii: "\\"), UInt8(ascii: "u"), 0x30, 0x30, hex[Int(byte >> 4)], hex[Int(byte & 0xF)]])
            default: bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }

    /// The JSON text of `value`.
    static func encode(_ value: JSONValue) -> [UInt8] {
        var writer = JSONWriter()
        writer.write(value)
        return writer.bytes
    }
}
