import SquaresCore

/// The first element of an integer array that is not a valid `UInt32`.
public struct ElementProblem: Sendable, Equatable {
    public var index: Int
    public var reason: ParamsErrorReason
    public init(index: Int, reason: ParamsErrorReason) { self.index = index; self.reason = reason }
}

/// A decoded array of JSON integers, in pieces that were decoded in parallel. Elements after the
/// first problem are validated as JSON but not kept.
public struct IntegerArray: Sendable, Equatable {
    public var pieces: [[UInt32]]
    public var count: Int
    public var firstProblem: ElementProblem?

    public init(pieces: [[UInt32]], count: Int, firstProblem: ElementProblem?) {
        self.pieces = pieces
        self.count = count
        self.firstProblem = firstProblem
    }

    /// All elements, joined (for tests and small arrays).
    public var elements: [UInt32] { pieces.flatMap { $0 } }
}

/// The JSON array text of integers failed the JSON grammar at `offset` (relative to the span).
public struct IntegerSyntaxError: Error, Sendable, Equatable {
    public var offset: Int
}

/// The hand-written codec for the two big arrays on the wire: the request's `numbers` and the
/// reply's squares. Foundation's Codable costs about 355 ns per number to decode and 500 ns to
/// encode a 1,000,000-element array on the 2-core reference machine; this codec decodes, squares
/// and encodes the same request in about 12 ns per number (`squares-bench`, README), so it is
/// what makes an out-of-process call cheaper than pure Python.
public enum IntegerArrayCodec {
    // MARK: - Scanning

    /// Scans the bytes after an array's `[` for the closing `]`, accepting only bytes that can occur
    /// in an array of JSON integers (digits, `-`, `,`, JSON whitespace). Returns the offset of the
    /// `]`, or nil when another byte comes first (the array is then parsed the general way).
    ///
    /// Runs 16 bytes at a time: this scan is the one sequential pass over a big request.
    @inlinable
    public static func scanIntegerArray(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int) -> Int? {
        guard let base = bytes.baseAddress else { return nil }
        let end = bytes.count
        var i = start
        let raw = UnsafeRawPointer(base)
        while i + 16 <= end {
            let v = raw.loadUnaligned(fromByteOffset: i, as: SIMD16<UInt8>.self)
            let digit = (v &- 0x30) .< 10
            let commaOrMinus = (v &- 0x2C) .< 2
            let space = (v .== 0x20) .| (v .== 0x0A) .| (v .== 0x0D) .| (v .== 0x09)
            if !all(digit .| commaOrMinus .| space) { break }
            i += 16
        }
        while i < end {
            let b = base[i]
            if isIntegerArrayByte(b) {
                i += 1
            } else {
                return b == UInt8(ascii: "]") ? i : nil
            }
        }
        return nil
    }

    @inlinable @inline(__always)
    static func isIntegerArrayByte(_ b: UInt8) -> Bool {
        (b &- 0x30) < 10 || (b &- 0x2C) < 2 || b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09
    }

    // MARK: - Decoding

    /// Splits the array text `span` (between `[` and `]`) into at most `parts` pieces, each
    /// boundary just after a comma, so each piece can be decoded on its own.
    public static func pieceRanges(_ bytes: UnsafeBufferPointer<UInt8>, span: Range<Int>, parts: Int) -> [Range<Int>] {
        let approximate = partition(count: span.count, parallelism: max(1, parts), minimumLength: 1)
        var ranges: [Range<Int>] = []
        var start = span.lowerBound
        for range in approximate.dropLast() {
            var cut = max(start, span.lowerBound + range.upperBound)
            while cut < span.upperBound && bytes[cut] != UInt8(ascii: ",") { cut += 1 }
            if cut >= span.upperBound { break }
            ranges.append(start..<cut + 1)
            start = cut + 1
        }
        ranges.append(start..<span.upperBound)
        return ranges
    }

    /// One decoded piece.
    public struct Piece: Sendable {
        public var values: [UInt32]
        /// Elements in the piece, kept or not.
        public var count: Int
        public var firstProblem: ElementProblem?
    }

    /// Decodes one piece of an integer array's text. A piece that is not the last ends just after a
    /// comma; the last piece ends at the array's `]`. `isWhole` marks a piece that is the whole
    /// array, which alone may be empty. Problem indices are relative to the piece.
    /// - Throws: `IntegerSyntaxError` where the text breaks the JSON grammar.
    public static func decodePiece(
        _ bytes: UnsafeBufferPointer<UInt8>, range: Range<Int>, isLast: Bool, isWhole: Bool
    ) throws(IntegerSyntaxError) -> Piece {
        let base = bytes.baseAddress!
        var p = range.lowerBound
        let e = range.upperBound
        @inline(__always) func skipSpace() {
            while p < e {
                let b = base[p]
                guard b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 else { break }
                p += 1
            }
        }
        skipSpace()
        if p == e && isWhole { return Piece(values: [], count: 0, firstProblem: nil) }
        var problem: ElementProblem? = nil
        var count = 0
        let capacity = (range.count + 1) / 2
        var failure: Int? = nil
        let values = [UInt32](unsafeUninitializedCapacity: capacity) { out, initialized in
            let out = out.baseAddress!
            while true {
                // One element: -?(0|[1-9][0-9]*)
                var negative = false
                if p < e && base[p] == UInt8(ascii: "-") { negative = true; p += 1 }
                let digitsStart = p
                var value: UInt64 = 0
                while p < e {
                    let d = base[p] &- 0x30
                    if d >= 10 { break }
                    value = value &* 10 &+ UInt64(d)
                    p += 1
                }
                let digits = p - digitsStart
                if digits == 0 || (digits > 1 && base[digitsStart] == 0x30) {
                    failure = digits == 0 ? p : digitsStart
                    return
                }
                if problem == nil {
                    if negative && value != 0 || negative && digits > 1 {
                        problem = ElementProblem(index: count, reason: .negative)
                    } else if digits > 10 || value > UInt64(UInt32.max) {
                        problem = ElementProblem(index: count, reason: .tooLarge)
                    } else {
                        out[count] = UInt32(truncatingIfNeeded: value)
                        initialized = count + 1
                    }
                }
                count += 1
                skipSpace()
                if p == e {
                    if !isLast { failure = p }  // a middle piece must end with its comma
                    return
                }
                guard base[p] == UInt8(ascii: ",") else { failure = p; return }
                p += 1
                if p == e && !isLast { return }
                skipSpace()
            }
        }
        if let failure { throw IntegerSyntaxError(offset: failure - range.lowerBound) }
        return Piece(values: values, count: count, firstProblem: problem)
    }

    /// Decodes the array text `span` (between `[` and `]`) split into `parts` pieces, decoded in
    /// parallel when there is more than one.
    public static func decode(
        _ frame: FrameBytes, span: Range<Int>, parts: Int
    ) async throws(IntegerSyntaxError) -> IntegerArray {
        let ranges = pieceRanges(UnsafeBufferPointer(frame.storage), span: span, parts: parts)
        let outcome: [Result<Piece, IntegerSyntaxError>]
        do {
            outcome = try await forEachRange(ranges.indices.map { $0..<$0 + 1 }) { index in
                let i = index.lowerBound
                return Result { () throws(IntegerSyntaxError) -> Piece in
                    try decodePiece(UnsafeBufferPointer(frame.storage), range: ranges[i], isLast: i == ranges.count - 1, isWhole: ranges.count == 1)
                }
            }
        } catch {
            // forEachRange rethrows only what the body throws, and the body never throws.
            preconditionFailure("unexpected error \(error)")
        }
        var pieces: [Piece] = []
        pieces.reserveCapacity(outcome.count)
        for (i, result) in outcome.enumerated() {
            switch result {
            case .success(let piece): pieces.append(piece)
            case .failure(let error):
                throw IntegerSyntaxError(offset: ranges[i].lowerBound - span.lowerBound + error.offset)
            }
        }
        return assemble(pieces)
    }

    /// Decodes the array text `span` on the calling task, as one piece.
    public static func decodeSequentially(
        _ bytes: UnsafeBufferPointer<UInt8>, span: Range<Int>
    ) throws(IntegerSyntaxError) -> IntegerArray {
        assemble([try decodePiece(bytes, range: span, isLast: true, isWhole: true)])
    }

    static func assemble(_ pieces: [Piece]) -> IntegerArray {
        var count = 0
        var problem: ElementProblem? = nil
        var kept: [[UInt32]] = []
        for piece in pieces {
            if problem == nil {
                if let local = piece.firstProblem {
                    problem = ElementProblem(index: count + local.index, reason: local.reason)
                } else {
                    kept.append(piece.values)
                }
            }
            count += piece.count
        }
        return IntegerArray(pieces: problem == nil ? kept : [], count: count, firstProblem: problem)
    }

    // MARK: - Encoding

    /// "00", "01", …, "99": two digits per table read halves the divisions.
    @usableFromInline
    static let digitPairs: [UInt8] = Array((0..<100).map { (n: Int) -> String in n < 10 ? "0\(n)" : "\(n)" }.joined().utf8)

    /// The decimal digits of `value` written backwards ending at `end`; returns the first digit's
    /// position.
    @inlinable @inline(__always)
    static func writeDigits(_ value: UInt64, endingAt end: UnsafeMutablePointer<UInt8>, pairs: UnsafePointer<UInt8>) -> UnsafeMutablePointer<UInt8> {
        var p = end
        var v = value
        // Peel 8 digits at a time so the inner loop runs on 32-bit values.
        while v >= 100_000_000 {
            let q = v / 100_000_000
            var low = UInt32(truncatingIfNeeded: v &- q &* 100_000_000)
            for _ in 0..<4 {
                let r = Int(low % 100)
                low /= 100
                p -= 2
                p[0] = pairs[2 * r]
                p[1] = pairs[2 * r + 1]
            }
            v = q
        }
        var small = UInt32(truncatingIfNeeded: v)
        while small >= 100 {
            let r = Int(small % 100)
            small /= 100
            p -= 2
            p[0] = pairs[2 * r]
            p[1] = pairs[2 * r + 1]
        }
        if small >= 10 {
            p -= 2
            p[0] = pairs[2 * Int(small)]
            p[1] = pairs[2 * Int(small) + 1]
        } else {
            p -= 1
            p[0] = UInt8(truncatingIfNeeded: small) &+ 0x30
        }
        return p
    }

    /// The JSON text of the squares of `values`, comma-separated, with a leading comma when
    /// `leadingComma` (used to join pieces). The brackets are not included.
    public static func encodeSquares(of values: UnsafeBufferPointer<UInt32>, leadingComma: Bool) -> [UInt8] {
        // At most 20 digits and a comma per element.
        let capacity = values.count * 21 + 1
        return [UInt8](unsafeUninitializedCapacity: capacity) { out, initialized in
            digitPairs.withUnsafeBufferPointer { pairsBuffer in
                let pairs = pairsBuffer.baseAddress!
                var q = out.baseAddress!
                var scratch: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes: room for 20 digits
                withUnsafeMutableBytes(of: &scratch) { raw in
                    let end = raw.baseAddress!.assumingMemoryBound(to: UInt8.self) + 24
                    for (i, x) in values.enumerated() {
                        if i > 0 || leadingComma { q.pointee = UInt8(ascii: ","); q += 1 }
                        let first = writeDigits(square(x), endingAt: end, pairs: pairs)
                        let n = end - first
                        q.update(from: first, count: n)
                        q += n
                    }
                }
                initialized = q - out.baseAddress!
            }
        }
    }

    /// The JSON text of the squares of `array`'s elements, joined, as segments to write in order
    /// (without brackets). Pieces are squared and encoded in parallel.
    public static func encodeSquares(of array: IntegerArray, parallelism: Int) async throws -> [[UInt8]] {
        let pieces = array.pieces.filter { !$0.isEmpty }
        if pieces.count <= 1 || parallelism == 1 {
            try Task.checkCancellation()
            return pieces.enumerated().map { i, piece in
                piece.withUnsafeBufferPointer { encodeSquares(of: $0, leadingComma: i > 0) }
            }
        }
        return try await forEachRange(pieces.indices.map { $0..<$0 + 1 }) { index in
            try Task.checkCancellation()
            let i = index.lowerBound
            return pieces[i].withUnsafeBufferPointer { encodeSquares(of: $0, leadingComma: i > 0) }
        }
    }
}

