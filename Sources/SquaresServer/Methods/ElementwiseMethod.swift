import SquaresCore
import SquaresProtocol

/// A method that maps each `UInt32` of an array to one exact `UInt64` (`calculate_squares`).
/// Its params are `{"numbers": [...]}`, `[[...]]`, `{"numbersPacked": "<base64>"}` or
/// `{"numbersShm": {...}}` (a shared-memory segment, mapped in place), answered in kind; a
/// conforming type gives only its name, its map and its packed and shm results' members (and a
/// smaller element limit, if its results need one). Decoding, the computation and the errors are
/// the same for all, here, specialised per map.
protocol ElementwiseMethod: RPCMethod where Params == ElementwiseParams {
    associatedtype Map: ElementMap

    /// The member of the packed reply's object that holds the results (`squaresPacked`).
    static var packedResultKey: String { get }

    /// The member of the shm reply's object that says where the results are (`squaresShm`).
    static var shmResultKey: String { get }

    /// The largest element taken; a larger one is refused as `too_large`. `UInt32.max` (all of
    /// them) unless the map's results would not fit a `UInt64`.
    static var maxElement: UInt32 { get }
}

/// An element-wise method's params, decoded.
enum ElementwiseParams: Sendable {
    /// A JSON array of integers, answered with a JSON array.
    case json(IntegerArray)
    /// The packed encoding's base64 text, not yet decoded; answered packed.
    case packed(String)
    /// `numbersShm`: a segment of the client's, accepted but not opened yet; answered in place.
    case shm(SharedSegmentReference)
}

extension ElementwiseMethod {
    static var maxElement: UInt32 { .max }

    func decode(_ params: JSONValue?, in context: MethodContext) throws(RPCError) -> ElementwiseParams {
        let shapeError = RPCError.invalidParams(.invalidShape, detail: "expected {\"numbers\": [...]} or [[...]]")
        let numbers: JSONValue
        switch params {
        case .object(let object)?:
            let given = [object["numbers"], object["numbersPacked"], object["numbersShm"]].count { $0 != nil }
            guard given <= 1 else {
                throw RPCError.invalidParams(.invalidShape, detail: "give one of numbers, numbersPacked and numbersShm")
            }
            if let reference = object["numbersShm"] {
                return .shm(try Self.acceptedReference(reference, in: context))
            }
            if let packed = object["numbersPacked"] {
                guard case .string(let text) = packed else {
                    throw RPCError.invalidParams(.invalidPacked, detail: "numbersPacked is not a string")
                }
                return .packed(text)
            }
            guard let value = object["numbers"] else { throw shapeError }
            numbers = value
        case .array(let elements)? where elements.count == 1:
            numbers = elements[0]
        case .integers(let array)?:
            // `[5]` by position: the one argument is a number, not an array.
            guard array.count == 1 else { throw shapeError }
            throw RPCError.invalidParams(.notAnArray, detail: "numbers is not an array")
        default:
            throw shapeError
        }
        switch numbers {
        case .integers(let array):
            return .json(array)
        case .array(let elements):
            // An array the fast codec did not take holds an element that is not an integer.
            throw Self.firstInvalidElement(elements)
        default:
            throw RPCError.invalidParams(.notAnArray, detail: "numbers is not an array")
        }
    }

    func workSize(of params: ElementwiseParams) -> Int {
        switch params {
        case .json(let numbers): numbers.count
        case .packed(let text): PackedCodec.approximateCount(text)
        case .shm(let reference): reference.count
        }
    }

    /// A notification of a segment is still computed: its results are written.
    func hasSideEffects(_ params: ElementwiseParams) -> Bool {
        if case .shm = params { true } else { false }
    }

    func compute(_ params: ElementwiseParams, in context: MethodContext) async throws -> ResultBody {
        let parallelism = context.configuration.parallelism
        switch params {
        case .json(let numbers):
            if let problem = Self.firstProblem(numbers) { throw Self.invalidElement(problem) }
            // The map fused into the encoder: decode → map → encode touches each number once.
            return Self.jsonResult(try await IntegerArrayCodec.encode(numbers, mapping: Map.self, parallelism: parallelism))
        case .packed(let text):
            let numbers: OwnedBuffer<UInt32>
            do throws(PackedCodec.Invalid) {
                numbers = try await PackedCodec.decodeNumbers(text, parallelism: parallelism)
            } catch {
                throw Self.invalidPacked(error)
            }
            if let problem = Self.firstProblem(numbers) { throw Self.invalidElement(problem) }
            let results = try await ParallelMap(parallelism: parallelism).map(numbers, through: Map.self)
            return Self.packedResult(try await PackedCodec.encode(results, parallelism: parallelism))
        case .shm(let reference):
            // Mapped here, unmapped on every path, a cancellation's included, before the reply is
            // written.
            if let segment = try MappedSegment.map(reference) {
                defer { segment.unmap() }
                if let problem = Self.firstProblem(segment.numbers) { throw Self.invalidElement(problem) }
                try await ParallelMap(parallelism: parallelism).map(segment.numbers, into: segment.results, through: Map.self)
            }
            return Self.shmResult(reference)
        }
    }

    /// The segment an shm request names, if this worker serves shared memory (else the params
    /// are of a shape it does not know, as for a 1.1 worker), the reference is well formed, and
    /// its name carries the prefix that `initialize` armed. Nothing is opened.
    static func acceptedReference(_ value: JSONValue, in context: MethodContext) throws(RPCError) -> SharedSegmentReference {
        guard context.configuration.sharedMemory else {
            throw RPCError.invalidParams(.invalidShape, detail: "expected {\"numbers\": [...]} or [[...]] (no shared memory here)")
        }
        let reference = try SharedSegmentReference(value)
        guard let prefix = context.shmPrefix.armed else {
            throw SharedMemory.invalid("numbersShm: no shmPrefix was given to initialize")
        }
        guard reference.name.utf8.starts(with: prefix.utf8) else {
            throw SharedMemory.invalid("numbersShm.name does not start with the shmPrefix given to initialize")
        }
        return reference
    }

    static func jsonResult(_ segments: [[UInt8]]) -> ResultBody {
        .encoded([Array("[".utf8)] + segments + [Array("]".utf8)])
    }

    static func packedResult(_ segments: [[UInt8]]) -> ResultBody {
        .encoded([Array("{\"\(packedResultKey)\":\"".utf8)] + segments + [Array(#""}"#.utf8)])
    }

    static func shmResult(_ reference: SharedSegmentReference) -> ResultBody {
        .value(.object([shmResultKey: .object(["offset": .integer(reference.resultOffset), "count": .integer(reference.count)])]))
    }

    // MARK: - Errors: -32602 with the first bad element, as a client maps them to its own errors

    /// The first element the method refuses: the decoder's first problem, or an element above
    /// `maxElement` before it (the decoder keeps the elements before its problem). With the
    /// default limit there is nothing to scan.
    static func firstProblem(_ numbers: IntegerArray) -> ElementProblem? {
        if maxElement < UInt32.max {
            var offset = 0
            for piece in numbers.pieces {
                if let index = piece.firstIndex(where: { $0 > maxElement }) {
                    return ElementProblem(index: offset + index, reason: .tooLarge)
                }
                offset += piece.count
            }
        }
        return numbers.firstProblem
    }

    /// The first packed element above `maxElement` (every packed `UInt32` is otherwise valid).
    static func firstProblem(_ numbers: OwnedBuffer<UInt32>) -> ElementProblem? {
        withExtendedLifetime(numbers) { firstProblem(UnsafeBufferPointer(numbers.storage)) }
    }

    /// The first packed or shared element above `maxElement`.
    static func firstProblem(_ numbers: UnsafeBufferPointer<UInt32>) -> ElementProblem? {
        guard maxElement < UInt32.max, let index = numbers.firstIndex(where: { $0 > maxElement }) else { return nil }
        return ElementProblem(index: index, reason: .tooLarge)
    }

    static func invalidPacked(_ problem: PackedCodec.Invalid) -> RPCError {
        RPCError.invalidParams(.invalidPacked, detail: "numbersPacked: \(problem.detail)")
    }

    static func invalidElement(_ problem: ElementProblem) -> RPCError {
        let what = switch problem.reason {
        case .notAnInteger: "is not an integer"
        case .negative: "is negative"
        case .tooLarge: "is greater than \(maxElement)"
        case .notAnArray, .invalidShape, .invalidPacked, .invalidShm: "is invalid"
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
            } else if UInt32(text).map({ $0 > maxElement }) ?? true {
                return invalidElement(ElementProblem(index: index, reason: .tooLarge))
            }
        }
        // Unreachable: an array of valid elements is an integer array. Answered, not trapped.
        return RPCError(.internalError, message: "Internal error: a valid array took the general path")
    }
}
