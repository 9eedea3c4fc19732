/// Why a frame is not a JSON text.
public struct JSONParseError: Error, Sendable, Equatable, CustomStringConvertible {
    var offset: Int
    var reason: String
    init(offset: Int, reason: String) { self.offset = offset; self.reason = reason }
    public var description: String { "\(reason) at byte \(offset)" }
}

/// A strict JSON (RFC 8259) reader for whole frames: UTF-8 only, no trailing bytes but whitespace,
/// nesting bounded by `maxDepth`. Arrays made only of integers take the fast codec's path.
public struct JSONReader: Sendable {
    var maxDepth: Int
    /// Integer arrays with at least this many bytes of text are decoded in parallel pieces by
    /// `parse(_:parallelism:)`. Below it one piece is faster than a task group (`squares-bench`).
    public var parallelSpanBytes: Int

    public init(maxDepth: Int = ProtocolConstants.maxNestingDepth, parallelSpanBytes: Int = 256 * 1024) {
        self.maxDepth = maxDepth
        self.parallelSpanBytes = parallelSpanBytes
    }

    /// Parses a whole frame in one pass on the calling thread.
    /// - Throws: `JSONParseError` for anything that is not exactly one JSON value in UTF-8.
    public func parse(_ frame: FrameBytes) throws(JSONParseError) -> JSONValue {
        var scanner = try Scanner(frame: frame, maxDepth: maxDepth, parallelSpanBytes: .max)
        return try scanner.parseDocument()
    }

    /// Parses a whole frame, its integer arrays of at least `parallelSpanBytes` decoded in
    /// `parallelism` pieces in parallel: one pass leaves them out (checked only for their bytes),
    /// then each is decoded and put in its place. The same value as `parse(_:)`, or the same error.
    /// - Throws: `JSONParseError` for anything that is not exactly one JSON value in UTF-8.
    public func parse(_ frame: FrameBytes, parallelism: Int) async throws(JSONParseError) -> JSONValue {
        guard parallelism > 1 else { return try parse(frame) }
        var scanner = try Scanner(frame: frame, maxDepth: maxDepth, parallelSpanBytes: parallelSpanBytes)
        let root = try scanner.parseDocument()
        guard !scanner.deferred.isEmpty else { return root }
        var decoded: [IntegerArray] = []
        for span in scanner.deferred {
            do {
                decoded.append(try await IntegerArrayCodec.decode(frame, span: span, parts: parallelism))
            } catch {
                throw JSONParseError(offset: span.lowerBound + error.offset, reason: "invalid number array")
            }
        }
        var next = decoded[...]
        return Self.filling(root, from: &next)
    }

    /// Parses a frame held in an array (a copy is made; for tests).
    func parse(_ frame: [UInt8], parallelism: Int = 1) async throws(JSONParseError) -> JSONValue {
        try await parse(FrameBytes(frame), parallelism: parallelism)
    }

    /// `value` with its deferred arrays (`IntegerArray.deferred`) replaced, in source order.
    private static func filling(_ value: JSONValue, from decoded: inout ArraySlice<IntegerArray>) -> JSONValue {
        switch value {
        case .integers(let array) where array.count < 0:
            return .integers(decoded.popFirst()!)
        case .array(var elements):
            for i in elements.indices { elements[i] = filling(elements[i], from: &decoded) }
            return .array(elements)
        case .object(var object):
            for i in object.members.indices { object.members[i].value = filling(object.members[i].value, from: &decoded) }
            return .object(object)
        default:
            return value
        }
    }
}

extension IntegerArray {
    /// The reader's mark for an array it decodes after its pass; never seen outside the reader.
    fileprivate static let deferred = IntegerArray(pieces: [], count: -1, firstProblem: nil)
}

/// One pass over the frame's bytes.
private struct Scanner {
    let bytes: UnsafeBufferPointer<UInt8>
    let base: UnsafePointer<UInt8>
    let end: Int
    let maxDepth: Int
    let parallelSpanBytes: Int
    var p = 0
    var depth = 0
    /// The spans of the integer arrays left for a parallel decode, in source order.
    var deferred: [Range<Int>] = []

    init(frame: FrameBytes, maxDepth: Int, parallelSpanBytes: Int) throws(JSONParseError) {
        self.bytes = UnsafeBufferPointer(frame.storage)
        guard let base = bytes.baseAddress, bytes.count > 0 else { throw JSONParseError(offset: 0, reason: "empty frame") }
        self.base = base
        self.end = bytes.count
        self.maxDepth = maxDepth
        self.parallelSpanBytes = parallelSpanBytes
    }

    func fail(_ reason: String, at offset: Int? = nil) -> JSONParseError {
        JSONParseError(offset: offset ?? p, reason: reason)
    }

    mutating func skipSpace() {
        while p < end {
            let b = base[p]
            guard b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 else { return }
            p += 1
        }
    }

    mutating func parseDocument() throws(JSONParseError) -> JSONValue {
        skipSpace()
        guard p < end else { throw fail("no JSON value") }
        let value = try parseValue()
        skipSpace()
        guard p == end else { throw fail("unexpected bytes after the JSON value") }
        return value
    }

    mutating func parseValue() throws(JSONParseError) -> JSONValue {
        guard p < end else { throw fail("unexpected end of frame") }
        switch base[p] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try parseNumber())
        default: throw fail(base[p] >= 0x80 ? "unexpected non-ASCII byte" : "unexpected character")
        }
    }

    mutating func expectLiteral(_ literal: StaticString) throws(JSONParseError) {
        let count = literal.utf8CodeUnitCount
        guard end - p >= count else { throw fail("invalid literal") }
        for i in 0..<count where base[p + i] != literal.utf8Start[i] { throw fail("invalid literal") }
        p += count
    }

    mutating func enter() throws(JSONParseError) {
        depth += 1
        if depth > maxDepth { throw fail("nesting deeper than \(maxDepth)") }
    }

    mutating func parseArray() throws(JSONParseError) -> JSONValue {
        try enter()
        defer { depth -= 1 }
        let open = p
        p += 1
        if let close = IntegerArrayCodec.scanIntegerArray(bytes, from: p), hasDigit(p..<close) || isBlank(p..<close) {
            let span = p..<close
            p = close + 1
            if span.count >= parallelSpanBytes {
                deferred.append(span)
                return .integers(.deferred)
            }
            do {
                return .integers(try IntegerArrayCodec.decodeSequentially(bytes, span: span))
            } catch {
                throw fail("invalid number array", at: span.lowerBound + error.offset)
            }
        }
        p = open + 1
        var elements: [JSONValue] = []
        skipSpace()
        if p < end && base[p] == UInt8(ascii: "]") { p += 1; return .array(elements) }
        while true {
            skipSpace()
            elements.append(try parseValue())
            skipSpace()
            guard p < end else { throw fail("unterminated array") }
            if base[p] == UInt8(ascii: ",") { p += 1; continue }
            if base[p] == UInt8(ascii: "]") { p += 1; return .array(elements) }
            throw fail("expected ',' or ']'")
        }
    }

    /// `[,]` and `[-]` pass the byte scan; only spans that hold a digit or nothing but whitespace can
    /// be integer arrays, the rest take the general path, which reports them.
    func hasDigit(_ range: Range<Int>) -> Bool {
        range.contains { (base[$0] &- 0x30) < 10 }
    }

    func isBlank(_ range: Range<Int>) -> Bool {
        range.allSatisfy { base[$0] == 0x20 || base[$0] == 0x0A || base[$0] == 0x0D || base[$0] == 0x09 }
    }

    mutating func parseObject() throws(JSONParseError) -> JSONValue {
        try enter()
        defer { depth -= 1 }
        p += 1
        var object = JSONObject()
        skipSpace()
        if p < end && base[p] == UInt8(ascii: "}") { p += 1; return .object(object) }
        while true {
            skipSpace()
            guard p < end, base[p] == UInt8(ascii: "\"") else { throw fail("expected a member name") }
            let key = try parseString()
            skipSpace()
            guard p < end, base[p] == UInt8(ascii: ":") else { throw fail("expected ':'") }
            p += 1
            skipSpace()
            let value = try parseValue()
            object.members.append((key, value))
            skipSpace()
            guard p < end else { throw fail("unterminated object") }
            if base[p] == UInt8(ascii: ",") { p += 1; continue }
            if base[p] == UInt8(ascii: "}") { p += 1; return .object(object) }
            throw fail("expected ',' or '}'")
        }
    }

    mutating func parseNumber() throws(JSONParseError) -> String {
        let start = p
        if base[p] == UInt8(ascii: "-") { p += 1 }
        guard p < end, isDigit(base[p]) else { throw fail("invalid number") }
        if base[p] == UInt8(ascii: "0") {
            p += 1
        } else {
            while p < end && isDigit(base[p]) { p += 1 }
        }
        if p < end && base[p] == UInt8(ascii: ".") {
            p += 1
            guard p < end, isDigit(base[p]) else { throw fail("invalid number fraction") }
            while p < end && isDigit(base[p]) { p += 1 }
        }
        if p < end && (base[p] == UInt8(ascii: "e") || base[p] == UInt8(ascii: "E")) {
            p += 1
            if p < end && (base[p] == UInt8(ascii: "+") || base[p] == UInt8(ascii: "-")) { p += 1 }
            guard p < end, isDigit(base[p]) else { throw fail("invalid number exponent") }
            while p < end && isDigit(base[p]) { p += 1 }
        }
        return String(decoding: UnsafeBufferPointer(start: base + start, count: p - start), as: UTF8.self)
    }

    func isDigit(_ b: UInt8) -> Bool { (b &- 0x30) < 10 }

    mutating func parseString() throws(JSONParseError) -> String {
        p += 1  // opening quote
        let start = p
        // Fast path: no escapes.
        while p < end {
            let b = base[p]
            if b == UInt8(ascii: "\"") {
                let text = UnsafeBufferPointer(start: base + start, count: p - start)
                guard let string = String(validating: text, as: UTF8.self) else { throw fail("invalid UTF-8 in string", at: start) }
                p += 1
                return string
            }
            if b == UInt8(ascii: "\\") { break }
            if b < 0x20 { throw fail("control character in string") }
            p += 1
        }
        var decoded = [UInt8](UnsafeBufferPointer(start: base + start, count: p - start))
        while p < end {
            let b = base[p]
            switch b {
            case UInt8(ascii: "\""):
                p += 1
                guard let string = String(validating: decoded, as: UTF8.self) else { throw fail("invalid UTF-8 in string", at: start) }
                return string
            case UInt8(ascii: "\\"):
                p += 1
                guard p < end else { throw fail("unterminated string") }
                let escape = base[p]
                p += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): decoded.append(escape)
                case UInt8(ascii: "b"): decoded.append(0x08)
                case UInt8(ascii: "f"): decoded.append(0x0C)
                case UInt8(ascii: "n"): decoded.append(0x0A)
                case UInt8(ascii: "r"): decoded.append(0x0D)
                case UInt8(ascii: "t"): decoded.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try parseHex4()
                    if (0xD800..<0xDC00).contains(scalar), end - p >= 6, base[p] == UInt8(ascii: "\\"), base[p + 1] == UInt8(ascii: "u") {
                        let save = p
                        p += 2
                        let low = try parseHex4()
                        if (0xDC00..<0xE000).contains(low) {
                            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        } else {
                            p = save
                        }
                    }
                    // A lone surrogate cannot be UTF-8: it becomes U+FFFD, as in most decoders.
                    let unicode = Unicode.Scalar(scalar) ?? "\u{FFFD}"
                    decoded.append(contentsOf: String(Character(unicode)).utf8)
                default:
                    throw fail("invalid escape", at: p - 1)
                }
            default:
                if b < 0x20 { throw fail("control character in string") }
                decoded.append(b)
                p += 1
            }
        }
        throw fail("unterminated string")
    }

    mutating func parseHex4() throws(JSONParseError) -> UInt32 {
        guard end - p >= 4 else { throw fail("invalid \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let b = base[p]
            let digit: UInt8
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = b - 0x30
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = b - 0x57
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = b - 0x37
            default: throw fail("invalid \\u escape")
            }
            value = value << 4 | UInt32(digit)
            p += 1
        }
        return value
    }
}

