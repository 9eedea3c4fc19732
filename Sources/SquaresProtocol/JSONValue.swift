import SquaresCore

/// A parsed JSON value: a plain value, fully decoded. Numbers keep their exact source text (so ids
/// echo verbatim and big integers stay exact); arrays made only of integers are decoded by the
/// fast codec and held whole.
public indirect enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    /// The number's source text, already checked against JSON's number grammar.
    case number(String)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)
    /// An array whose elements are all JSON integers.
    case integers(IntegerArray)

    /// True for a JSON number with no fraction and no exponent (`-0` included).
    public var isInteger: Bool {
        guard case .number(let text) = self else { return false }
        return !text.utf8.contains { $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "e") || $0 == UInt8(ascii: "E") }
    }

    /// An object from key-value pairs, in order.
    public static func object(_ members: KeyValuePairs<String, JSONValue>) -> JSONValue {
        .object(JSONObject(members.map { (key: $0.key, value: $0.value) }))
    }

    public static func integer(_ value: some BinaryInteger) -> JSONValue { .number(String(value)) }
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
