/// What `calculate_squares` was asked to square.
public enum SquaresInput: Sendable {
    /// A JSON array, decoded.
    case json(IntegerArray)
    /// The packed encoding's base64 text, not yet decoded.
    case packed(String)
}

/// Reading `calculate_squares`'s params: `{"numbers": [...]}`, `[[...]]` or
/// `{"numbersPacked": "<base64>"}`.
extension ParsedFrame {
    public func squaresInput(in params: JSONValue?) -> Result<SquaresInput, RPCError> {
        if case .object(let object)? = params, let packed = object["numbersPacked"] {
            guard object["numbers"] == nil else {
                return .failure(.invalidParams(.invalidShape, detail: "give numbers or numbersPacked, not both"))
            }
            guard case .string(let text) = packed else {
                return .failure(.invalidParams(.invalidPacked, detail: "numbersPacked is not a string"))
            }
            return .success(.packed(text))
        }
        return numbers(in: params).map(SquaresInput.json)
    }

    /// The numbers to square, or the invalid-params error naming the first bad element.
    public func numbers(in params: JSONValue?) -> Result<IntegerArray, RPCError> {
        let shapeError = RPCError.invalidParams(.invalidShape, detail: "expected {\"numbers\": [...]} or [[...]]")
        let numbers: JSONValue
        switch params {
        case .object(let object)?:
            guard let value = object["numbers"] else { return .failure(shapeError) }
            numbers = value
        case .array(let elements)? where elements.count == 1:
            numbers = elements[0]
        case .integerArray?:
            // `[5]` by position: the one argument is a number, not an array.
            guard case .integerArray(let index)? = params, integerArrays[index].count == 1 else { return .failure(shapeError) }
            return .failure(.invalidParams(.notAnArray, detail: "numbers is not an array"))
        default:
            return .failure(shapeError)
        }
        switch numbers {
        case .integerArray(let index):
            let array = integerArrays[index]
            if let problem = array.firstProblem { return .failure(.invalidElement(problem)) }
            return .success(array)
        case .array(let elements):
            return Self.validate(elements)
        default:
            return .failure(.invalidParams(.notAnArray, detail: "numbers is not an array"))
        }
    }

    /// The general path: an array that the fast codec did not take holds at least one element that
    /// is not an integer, but elements before it may still be negative or too large.
    static func validate(_ elements: [JSONValue]) -> Result<IntegerArray, RPCError> {
        var values: [UInt32] = []
        values.reserveCapacity(elements.count)
        for (index, element) in elements.enumerated() {
            guard element.isInteger, case .number(let text) = element else {
                return .failure(.invalidElement(ElementProblem(index: index, reason: .notAnInteger)))
            }
            if text.hasPrefix("-") {
                if text != "-0" { return .failure(.invalidElement(ElementProblem(index: index, reason: .negative))) }
                values.append(0)
            } else if let value = UInt32(text) {
                values.append(value)
            } else {
                return .failure(.invalidElement(ElementProblem(index: index, reason: .tooLarge)))
            }
        }
        return .success(IntegerArray(pieces: [values], count: values.count, firstProblem: nil))
    }
}

extension ParsedFrame {
    /// True for absent params, `{}` and `[]`.
    public func isEmpty(_ params: JSONValue?) -> Bool {
        switch params {
        case nil: true
        case .object(let object)?: object.members.isEmpty
        case .array(let elements)?: elements.isEmpty
        case .integerArray(let index)?: integerArrays[index].count == 0
        default: false
        }
    }
}
