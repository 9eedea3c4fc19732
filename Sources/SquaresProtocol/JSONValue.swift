import SquaresCore

/// A parsed JSON value. Numbers keep their exact source text (so ids echo verbatim and big integers
/// stay exact); arrays made only of integers are decoded by the fast codec and held here whole.
public indirect enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    /// The number's source text, already checked against JSON's number grammar.
    case number(String)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)
    /// An array whose elements are all JSON integers.
    case integerArray(JSONIntegerArray)

    /// True for a JSON number with no fraction and no exponent (`-0` included).
    public var isInteger: Bool {
        guard case .number(let text) = self else { return false }
        return !text.utf8.contains { $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "e") || $0 == UInt8(ascii: "E") }
    }
}

/// An array of JSON integers inside a parsed value. Small ones are decoded by the reader's one
/// pass; a big one (see `JSONReader.parallelSpanBytes`) keeps its text span and is decoded in
/// parallel pieces by `decode(parts:)`, which the first task that needs the numbers runs, so the
/// reader's pass stays synchronous and short.
public final class JSONIntegerArray: Sendable, Equatable {
    private enum State: Sendable {
        case decoded(IntegerArray)
        /// Text between `[` and `]` in `frame`, not decoded yet. It holds at least one comma, so
        /// once decoded it has at least two elements (or is a syntax error).
        case pending(frame: FrameBytes, span: Range<Int>)
    }

    private let state: Locked<State>

    init(_ decoded: IntegerArray) { state = Locked(.decoded(decoded)) }

    init(pending frame: FrameBytes, span: Range<Int>) { state = Locked(.pending(frame: frame, span: span)) }

    /// The decoded array; nil while the text waits for `decode(parts:)`.
    public var decoded: IntegerArray? {
        state.withLock { if case .decoded(let array) = $0 { array } else { nil } }
    }

    /// Decodes a pending array in up to `parts` pieces (nothing to do once decoded).
    /// - Throws: `JSONParseError` (offset from the frame's start) where the text breaks JSON.
    func decode(parts: Int) async throws(JSONParseError) {
        guard case .pending(let frame, let span) = state.withLock({ $0 }) else { return }
        do {
            let array = try await IntegerArrayCodec.decode(frame, span: span, parts: parts)
            state.withLock { $0 = .decoded(array) }
        } catch {
            throw JSONParseError(offset: span.lowerBound + error.offset, reason: "invalid number array")
        }
    }

    /// The same elements and the same first problem, however they were split into pieces; a
    /// pending array equals only itself.
    public static func == (lhs: JSONIntegerArray, rhs: JSONIntegerArray) -> Bool {
        if lhs === rhs { return true }
        guard let left = lhs.decoded, let right = rhs.decoded else { return false }
        return left.count == right.count && left.firstProblem == right.firstProblem && left.elements == right.elements
    }
}

/// A JSON object's members in source order. Lookup takes the last of duplicate keys, as most
/// JSON libraries do (protocol/SPEC.md §2); objects on this wire are small, so a linear search is
/// the fast choice.
public struct JSONObject: Sendable, Equatable {
    public var members: [(key: String, value: JSONValue)]

    init(_ members: [(key: String, value: JSONValue)] = []) { self.members = members }

    public subscript(key: String) -> JSONValue? {
        members.last { $0.key == key }?.value
    }

    public static func == (lhs: JSONObject, rhs: JSONObject) -> Bool {
        lhs.members.count == rhs.members.count
            && zip(lhs.members, rhs.members).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }
}
