@testable import SquaresProtocol

/// The text between an integer array's brackets decoded the obvious way (split at commas, trim,
/// check each token against JSON's integer grammar, parse with the standard library), as the
/// reference that `IntegerArrayCodec`'s 8-bytes-at-a-time decoder must agree with.
enum IntegerArrayModel {
    enum Outcome: Equatable {
        case syntaxError
        /// As `IntegerArray` reports it: the values before the first problem, if any.
        case decoded(values: [UInt32], count: Int, firstProblem: ElementProblem?)

        init(_ array: IntegerArray) {
            self = .decoded(values: array.elements, count: array.count, firstProblem: array.firstProblem)
        }
    }

    static func isSpace(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 }

    static func decode(_ text: ArraySlice<UInt8>) -> Outcome {
        if text.allSatisfy(isSpace) { return .decoded(values: [], count: 0, firstProblem: nil) }
        var values: [UInt32] = []
        var problem: ElementProblem? = nil
        let tokens = text.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false)
        for (index, raw) in tokens.enumerated() {
            var token = raw.drop(while: isSpace)
            while let last = token.last, isSpace(last) { token = token.dropLast() }
            let negative = token.first == UInt8(ascii: "-")
            let digits = negative ? token.dropFirst() : token
            guard !digits.isEmpty, digits.allSatisfy({ (0x30...0x39).contains($0) }),
                  digits.count == 1 || digits.first != UInt8(ascii: "0")
            else { return .syntaxError }
            guard problem == nil else { continue }
            if negative && digits != [UInt8(ascii: "0")] {
                problem = ElementProblem(index: index, reason: .negative)
            } else if let value = UInt32(String(decoding: digits, as: UTF8.self)) {
                values.append(value)
            } else {
                problem = ElementProblem(index: index, reason: .tooLarge)
            }
        }
        return .decoded(values: values, count: tokens.count, firstProblem: problem)
    }
}
