import SquaresCore
import SquaresProtocol

/// `calculate_squares`: the exact squares of `UInt32`s, in order. Params `{"numbers": [...]}`,
/// `[[...]]`, or since 1.1 `{"numbersPacked": "<base64>"}`, answered in kind.
struct CalculateSquares: RPCMethod {
    static let name = "calculate_squares"

    enum Params: Sendable {
        /// A JSON array of integers (decoded or pending), answered with a JSON array.
        case json(JSONIntegerArray)
        /// The packed encoding's base64 text, not yet decoded; answered packed.
        case packed(String)
    }

    func decode(_ params: JSONValue?) throws(RPCError) -> Params {
        let shapeError = RPCError.invalidParams(.invalidShape, detail: "expected {\"numbers\": [...]} or [[...]]")
        let numbers: JSONValue
        switch params {
        case .object(let object)?:
            if let packed = object["numbersPacked"] {
                guard object["numbers"] == nil else {
                    throw RPCError.invalidParams(.invalidShape, detail: "give numbers or numbersPacked, not both")
                }
                guard case .string(let text) = packed else {
                    throw RPCError.invalidParams(.invalidPacked, detail: "numbersPacked is not a string")
                }
                return .packed(text)
            }
            guard let value = object["numbers"] else { throw shapeError }
            numbers = value
        case .array(let elements)? where elements.count == 1:
            numbers = elements[0]
        case .integerArray(let array)?:
            // `[5]` by position: the one argument is a number, not an array. (A pending array
            // has at least two elements.)
            guard array.decoded?.count == 1 else { throw shapeError }
            throw RPCError.invalidParams(.notAnArray, detail: "numbers is not an array")
        default:
            throw shapeError
        }
        switch numbers {
        case .integerArray(let array):
            return .json(array)
        case .array(let elements):
            // An array the fast codec did not take holds an element that is not an integer.
            throw Self.firstInvalidElement(elements)
        default:
            throw RPCError.invalidParams(.notAnArray, detail: "numbers is not an array")
        }
    }

    func immediateAnswer(_ params: Params, in context: MethodContext) throws(RPCError) -> ResultBody? {
        switch params {
        case .json(let array):
            guard let numbers = array.decoded else { return nil }
            if let problem = numbers.firstProblem { throw Self.invalidElement(problem) }
            guard context.isImmediate(elements: numbers.count) else { return nil }
            return Self.jsonResult(IntegerArrayCodec.encode(numbers, mapping: Squaring.self))
        case .packed(let text):
            guard context.isImmediate(elements: PackedCodec.approximateCount(text)) else { return nil }
            let numbers: OwnedBuffer<UInt32>
            do { numbers = try PackedCodec.decodeNumbers(text) } catch { throw Self.invalidPacked(error) }
            let squares = OwnedBuffer<UInt64>(uninitializedCount: numbers.count)
            withExtendedLifetime(numbers) {
                squareSequentially(UnsafeBufferPointer(numbers.storage), into: squares.storage)
            }
            return Self.packedResult([PackedCodec.encode(squares)])
        }
    }

    func answer(_ params: Params, in context: MethodContext, signal: CancellationSignal) async throws -> ResultBody {
        let parallelism = context.configuration.parallelism
        switch params {
        case .json(let array):
            guard let numbers = array.decoded else { preconditionFailure("the frame's pending arrays are decoded before its requests run") }
            if let problem = numbers.firstProblem { throw Self.invalidElement(problem) }
            // Squares fused into the encoder: decode → square → encode touches each number once.
            let segments = try await withCancellation(by: signal) {
                try await IntegerArrayCodec.encode(numbers, mapping: Squaring.self, parallelism: parallelism)
            }
            return Self.jsonResult(segments)
        case .packed(let text):
            let squaring = ParallelSquaring(parallelism: parallelism)
            let segments = try await withCancellation(by: signal) {
                let numbers: OwnedBuffer<UInt32>
                do throws(PackedCodec.Invalid) {
                    numbers = try await PackedCodec.decodeNumbers(text, parallelism: parallelism)
                } catch {
                    throw Self.invalidPacked(error)
                }
                return try await PackedCodec.encode(try await squaring.squares(of: numbers), parallelism: parallelism)
            }
            return Self.packedResult(segments)
        }
    }

    static func jsonResult(_ segments: [[UInt8]]) -> ResultBody {
        .encoded([Array("[".utf8)] + segments + [Array("]".utf8)])
    }

    static func packedResult(_ segments: [[UInt8]]) -> ResultBody {
        .encoded([Array(#"{"squaresPacked":""#.utf8)] + segments + [Array(#""}"#.utf8)])
    }

    // MARK: - Errors: -32602 with the first bad element, as a client maps them to its own errors

    static func invalidPacked(_ problem: PackedCodec.Invalid) -> RPCError {
        RPCError.invalidParams(.invalidPacked, detail: "numbersPacked: \(problem.detail)")
    }

    static func invalidElement(_ problem: ElementProblem) -> RPCError {
        let what = switch problem.reason {
        case .notAnInteger: "is not an integer"
        case .negative: "is negative"
        case .tooLarge: "is greater than \(ProtocolConstants.maxNumber)"
        case .notAnArray, .invalidShape, .invalidPacked: "is invalid"
        }
        return RPCError.invalidParams(problem.reason, index: problem.index, detail: "numbers[\(problem.index)] \(what)")
    }

    /// The error for a JSON array that the fast codec did not take: it holds an element that is not
    /// an integer, but an element before it may be negative or too large, and comes first.
    static func firstInvalidElement(_ elements: [JSONValue]) -> RPCError {
        for (index, element) in elements.enumerated() {
            guard element.isInteger, case .number(let text) = element else {
                return invalidElement(ElementProblem(index: index, reason: .notAnInteger))
            }
            if text.hasPrefix("-") {
                if text != "-0" { return invalidElement(ElementProblem(index: index, reason: .negative)) }
            } else if UInt32(text) == nil {
                return invalidElement(ElementProblem(index: index, reason: .tooLarge))
            }
        }
        // Unreachable: an array of valid UInt32s is an integer array. Answered, not trapped.
        return RPCError(.internalError, message: "Internal error: a valid array took the general path")
    }
}
