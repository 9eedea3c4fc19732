import SquaresCore

/// The first element of an integer array that is not a valid `UInt32`.
public struct ElementProblem: Sendable, Equatable {
    public var index: Int
    public var reason: ParamsErrorReason
    public init(index: Int, reason: ParamsErrorReason) { self.index = index; self.reason = reason }
}

/// A decoded array of JSON integers, in pieces that were decoded in parallel. Elements from the
/// first problem on are validated as JSON but not kept: `pieces` hold the elements before it
/// (so that a method with a smaller element limit can find a bad element before it). Two arrays
/// are equal when they hold the same elements and the same first problem, however split.
public struct IntegerArray: Sendable, Equatable {
    public var pieces: [[UInt32]]
    public var count: Int
    public var firstProblem: ElementProblem?

    init(pieces: [[UInt32]], count: Int, firstProblem: ElementProblem?) {
        self.pieces = pieces
        self.count = count
        self.firstProblem = firstProblem
    }

    /// All elements, joined (for tests and small arrays).
    public var elements: [UInt32] { pieces.flatMap { $0 } }

    public static func == (lhs: IntegerArray, rhs: IntegerArray) -> Bool {
        lhs.count == rhs.count && lhs.firstProblem == rhs.firstProblem && lhs.elements == rhs.elements
    }
}

/// The JSON array text of integers failed the JSON grammar at `offset` (relative to the span).
struct IntegerSyntaxError: Error, Sendable, Equatable {
    var offset: Int
}

/// The hand-written codec for the two big arrays on the wire: a request's array of `UInt32`s and
/// the reply's array of `UInt64`s, mapped element by element (`ElementMap`) as they are written.
/// `squares-bench` (`make bench`; figures in docs/performance.md) measures it against Foundation's
/// `Codable` in the same run: tens of times less time per number, and well under Python's own
/// json codec on the other side of the pipe.
public enum IntegerArrayCodec {
    // MARK: - Scanning

    /// Scans the bytes after an array's `[` for the closing `]`, accepting only bytes that can occur
    /// in an array of JSON integers (digits, `-`, `,`, JSON whitespace). Returns the offset of the
    /// `]`, or nil when another byte comes first (the array is then parsed the general way).
    ///
    /// This is the one sequential pass over a big request, so it reads 8 bytes at a time, with
    /// one branch per word for arrays of digits, commas and spaces. Swift's `SIMD16` comparisons compiled to per-lane
    /// code here and ran at ~7 ns per number; this SWAR loop runs at ~1.
    @inlinable
    public static func scanIntegerArray(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int) -> Int? {
        guard let base = bytes.baseAddress else { return nil }
        let end = bytes.count
        var i = start
        let raw = UnsafeRawPointer(base)
        while i + 8 <= end {
            let word = raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            // Arrays as JSON encoders write them hold only digits, commas and spaces (Python's
            // `[1, 2]`): one predictable branch per word. Anything else (`-`, other whitespace,
            // the closing `]`) goes byte by byte.
            if nonDigitBytes(word) & ~(matchingBytes(word, 0x2C) | matchingBytes(word, 0x20)) != 0 {
                for at in i..<i + 8 where !isIntegerArrayByte(base[at]) {
                    return base[at] == UInt8(ascii: "]") ? at : nil
                }
            }
            i += 8
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

    /// Bit 7 of each byte of the result is set where `word`'s byte is not an ASCII digit.
    @inlinable @inline(__always)
    static func nonDigitBytes(_ word: UInt64) -> UInt64 {
        // t = b ^ 0x30 is below 10 exactly for digits. Adding 0x76 to t's low 7 bits sets bit 7
        // when t >= 10 (no carry leaves the byte); or-ing t catches t >= 0x80.
        let t = word ^ 0x3030_3030_3030_3030
        return (((t & 0x7F7F_7F7F_7F7F_7F7F) &+ 0x7676_7676_7676_7676) | t) & 0x8080_8080_8080_8080
    }

    /// Bit 7 of each byte of the result is set where `word`'s byte equals `byte` (exact).
    @inlinable @inline(__always)
    static func matchingBytes(_ word: UInt64, _ byte: UInt8) -> UInt64 {
        let x = word ^ (0x0101_0101_0101_0101 &* UInt64(byte))
        return ~((((x & 0x7F7F_7F7F_7F7F_7F7F) &+ 0x7F7F_7F7F_7F7F_7F7F) | x) | 0x7F7F_7F7F_7F7F_7F7F)
    }

    @inlinable @inline(__always)
    static func isIntegerArrayByte(_ b: UInt8) -> Bool {
        (b &- 0x30) < 10 || (b &- 0x2C) < 2 || b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09
    }

    // MARK: - Decoding

    /// Splits the array text `span` (between `[` and `]`) into at most `parts` pieces, each
    /// boundary just after a comma, so each piece can be decoded on its own.
    static func pieceRanges(_ bytes: UnsafeBufferPointer<UInt8>, span: Range<Int>, parts: Int) -> [Range<Int>] {
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
    struct Piece: Sendable {
        var values: [UInt32]
        /// Elements in the piece, kept or not.
        var count: Int
        var firstProblem: ElementProblem?
    }

    /// Decodes one piece of an integer array's text. A piece that is not the last ends just after a
    /// comma; the last piece ends at the array's `]`. `isWhole` marks a piece that is the whole
    /// array, which alone may be empty. Problem indices are relative to the piece.
    /// - Throws: `IntegerSyntaxError` where the text breaks the JSON grammar.
    static func decodePiece(
        _ bytes: UnsafeBufferPointer<UInt8>, range: Range<Int>, isLast: Bool, isWhole: Bool
    ) throws(IntegerSyntaxError) -> Piece {
        let base = bytes.baseAddress!
        var outcome = PieceOutcome()
        let values = [UInt32](unsafeUninitializedCapacity: (range.count + 1) / 2) { out, initialized in
            outcome = decodeElements(
                base, range.lowerBound, range.upperBound, frameEnd: bytes.count,
                into: out.baseAddress!, isLast: isLast, isWhole: isWhole)
            initialized = outcome.kept
        }
        if let failure = outcome.failure { throw IntegerSyntaxError(offset: failure - range.lowerBound) }
        return Piece(values: values, count: outcome.count, firstProblem: outcome.problem)
    }

    /// 10^n for n in 1...8, without a table lookup (a global array costs a lazy-initialisation
    /// check and a bounds check in the hot loop).
    @inline(__always)
    static func powerOfTen(_ n: Int) -> UInt64 {
        var result: UInt64 = 10
        if n & 1 == 0 { result = 1 }
        if n & 2 != 0 { result &*= 100 }
        if n & 4 != 0 { result &*= 10_000 }
        if n & 8 != 0 { result = 100_000_000 }
        return result
    }

    /// The value of the first `count` (1...8) ASCII digits of `word` (first digit in the lowest
    /// byte). The digits are moved to the top bytes, zeros fill the rest, and three multiply-shift
    /// steps combine pairs, quads and the two halves.
    @inline(__always)
    static func eightDigitValue(_ word: UInt64, count: Int) -> UInt64 {
        var v = (word &- 0x3030_3030_3030_3030) << (64 &- 8 &* UInt64(count))
        v = (v &* 10) &+ (v >> 8)
        v = ((v & 0x00FF_00FF_00FF_00FF) &* (100 << 16 &+ 1)) >> 16
        v = ((v & 0x0000_FFFF_0000_FFFF) &* (10_000 << 32 &+ 1)) >> 32
        return v
    }

    @usableFromInline
    struct PieceOutcome {
        var count = 0
        var kept = 0
        var problem: ElementProblem? = nil
        var failure: Int? = nil
    }

    /// The hot loop: all state in locals, so it stays in registers.
    @inline(__always)
    static func decodeElements(
        _ base: UnsafePointer<UInt8>, _ start: Int, _ e: Int, frameEnd: Int,
        into out: UnsafeMutablePointer<UInt32>, isLast: Bool, isWhole: Bool
    ) -> PieceOutcome {
        var p = start
        var count = 0
        var problem: ElementProblem? = nil
        @inline(__always) func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 }
        while p < e && isSpace(base[p]) { p += 1 }
        if p == e && isWhole { return PieceOutcome() }
        while true {
            // One element: -?(0|[1-9][0-9]*)
            let negative = p < e && base[p] == UInt8(ascii: "-")
            if negative { p += 1 }
            let digitsStart = p
            var value: UInt64 = 0
            // Eight bytes at a time while they are inside the frame: the digit run's length comes
            // from the first non-digit byte's position, with no branch per digit.
            while p &+ 8 <= frameEnd {
                let word = UnsafeRawPointer(base + p).loadUnaligned(as: UInt64.self)
                let run = nonDigitBytes(word).trailingZeroBitCount >> 3  // 8 when all are digits
                if run > 0 {
                    value = value &* powerOfTen(run) &+ eightDigitValue(word, count: run)
                }
                p &+= run
                if run < 8 { break }
            }
            if p &+ 8 > frameEnd {
                while p < e {
                    let d = base[p] &- 0x30
                    if d >= 10 { break }
                    value = value &* 10 &+ UInt64(d)
                    p += 1
                }
            }
            let digits = p - digitsStart
            if digits == 0 || (digits > 1 && base[digitsStart] == 0x30) {
                return PieceOutcome(count: count, kept: count, problem: problem, failure: digits == 0 ? p : digitsStart)
            }
            if problem == nil {
                if negative && (value != 0 || digits > 1) {
                    problem = ElementProblem(index: count, reason: .negative)
                } else if digits > 10 || value > UInt64(UInt32.max) {
                    problem = ElementProblem(index: count, reason: .tooLarge)
                } else {
                    out[count] = UInt32(truncatingIfNeeded: value)
                }
            }
            count += 1
            if p < e && base[p] == UInt8(ascii: ",") {
                p += 1
                if p == e && !isLast { break }  // a middle piece ends just after its comma
                while p < e && isSpace(base[p]) { p += 1 }
                continue
            }
            while p < e && isSpace(base[p]) { p += 1 }
            if p == e {
                if isLast { break }
                return PieceOutcome(count: count, kept: 0, problem: problem, failure: p)  // missing comma
            }
            guard base[p] == UInt8(ascii: ",") else {
                return PieceOutcome(count: count, kept: 0, problem: problem, failure: p)
            }
            p += 1
            if p == e && !isLast { break }
            while p < e && isSpace(base[p]) { p += 1 }
        }
        return PieceOutcome(count: count, kept: problem?.index ?? count, problem: problem, failure: nil)
    }

    /// Decodes the array text `span` (between `[` and `]`) split into `parts` pieces, decoded in
    /// parallel when there is more than one.
    static func decode(
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
    static func decodeSequentially(
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
                // A piece keeps the values before its own problem.
                kept.append(piece.values)
                if let local = piece.firstProblem {
                    problem = ElementProblem(index: count + local.index, reason: local.reason)
                }
            }
            count += piece.count
        }
        return IntegerArray(pieces: kept, count: count, firstProblem: problem)
    }

    // MARK: - Encoding

    /// Eight ASCII digits of `x` < 10^8, leading zeros included, first digit in the lowest byte:
    /// the two 4-digit halves, then the four 2-digit quarters, then the eight digits are split
    /// lane-wise with multiply-shift divisions (exact over these ranges).
    @inlinable @inline(__always)
    static func eightDigits(_ x: UInt32) -> UInt64 {
        let merged = UInt64(x / 10_000) | (UInt64(x % 10_000) << 32)
        let hundreds32 = ((merged &* 10_486) >> 20) & 0x0000_007F_0000_007F
        let pairs = ((merged &- 100 &* hundreds32) << 16) &+ hundreds32
        let tens = ((pairs &* 103) >> 10) & 0x000F_000F_000F_000F
        return (tens &+ ((pairs &- 10 &* tens) << 8)) | 0x3030_3030_3030_3030
    }

    /// Writes the decimal digits of `x` < 10^8 without leading zeros; returns the next position.
    /// Stores eight bytes: the caller leaves room after the digits.
    @inlinable @inline(__always)
    static func writeShort(_ x: UInt32, to q: UnsafeMutablePointer<UInt8>) -> UnsafeMutablePointer<UInt8> {
        let digits = x >= 10_000 ? (x >= 1_000_000 ? (x >= 10_000_000 ? 8 : 7) : (x >= 100_000 ? 6 : 5))
            : (x >= 100 ? (x >= 1_000 ? 4 : 3) : (x >= 10 ? 2 : 1))
        let word = eightDigits(x) >> (64 &- 8 &* UInt64(digits))
        UnsafeMutableRawPointer(q).storeBytes(of: word, as: UInt64.self)
        return q + digits
    }

    @inlinable @inline(__always)
    static func writeEight(_ x: UInt32, to q: UnsafeMutablePointer<UInt8>) -> UnsafeMutablePointer<UInt8> {
        UnsafeMutableRawPointer(q).storeBytes(of: eightDigits(x), as: UInt64.self)
        return q + 8
    }

    /// Writes the decimal digits of `value`; returns the next position. May store up to eight
    /// bytes past the digits.
    @inlinable @inline(__always)
    static func writeDecimal(_ value: UInt64, to q: UnsafeMutablePointer<UInt8>) -> UnsafeMutablePointer<UInt8> {
        if value < 100_000_000 { return writeShort(UInt32(truncatingIfNeeded: value), to: q) }
        let high = value / 100_000_000
        let low = UInt32(truncatingIfNeeded: value &- high &* 100_000_000)
        if high < 100_000_000 {
            return writeEight(low, to: writeShort(UInt32(truncatingIfNeeded: high), to: q))
        }
        let top = high / 100_000_000
        let middle = UInt32(truncatingIfNeeded: high &- top &* 100_000_000)
        return writeEight(low, to: writeEight(middle, to: writeShort(UInt32(truncatingIfNeeded: top), to: q)))
    }

    /// The kernel: the JSON text of `Map.apply` of each of `values`, comma-separated, with a
    /// leading comma when `leadingComma` (used to join pieces). The brackets are not included.
    @inlinable
    static func encode<Map: ElementMap>(_ values: UnsafeBufferPointer<UInt32>, leadingComma: Bool, mapping: Map.Type) -> [UInt8] {
        // At most 20 digits and a comma per element, and 8 bytes of room for the last 8-byte store.
        let capacity = values.count * 21 + 1 + 8
        return [UInt8](unsafeUninitializedCapacity: capacity) { out, initialized in
            var q = out.baseAddress!
            for (i, x) in values.enumerated() {
                if i > 0 || leadingComma { q.pointee = UInt8(ascii: ","); q += 1 }
                q = writeDecimal(Map.apply(x), to: q)
            }
            initialized = q - out.baseAddress!
        }
    }

    /// Elements encoded between two cancellation checks (~1 ms of work).
    @usableFromInline static let encodeSliceLength = 65_536

    /// The JSON text of `Map.apply` of `array`'s elements (without brackets), as segments to write
    /// in order: the kernel over each decoded piece, on the calling thread.
    @inlinable
    public static func encode<Map: ElementMap>(_ array: IntegerArray, mapping: Map.Type) -> [[UInt8]] {
        array.pieces.filter { !$0.isEmpty }.enumerated().map { i, piece in
            piece.withUnsafeBufferPointer { encode($0, leadingComma: i > 0, mapping: mapping) }
        }
    }

    /// The same text, the kernel run over the pieces in parallel (one child task per piece the
    /// decoder made), in slices with a cancellation check between them.
    /// - Throws: `CancellationError` when the task is cancelled between two slices.
    @inlinable
    public static func encode<Map: ElementMap>(_ array: IntegerArray, mapping: Map.Type, parallelism: Int) async throws -> [[UInt8]] {
        try Task.checkCancellation()
        if array.count < encodeSliceLength { return encode(array, mapping: mapping) }
        let pieces = array.pieces.filter { !$0.isEmpty }
        // One child per piece (the decoder made `parallelism` of them), or all on this task.
        let groups = parallelism == 1 ? [pieces.indices] : pieces.indices.map { $0..<$0 + 1 }
        let perGroup = try await forEachRange(groups) { group -> [[UInt8]] in
            try group.flatMap { i in
                try pieces[i].withUnsafeBufferPointer { values in
                    try stride(from: 0, to: values.count, by: encodeSliceLength).map { start in
                        try Task.checkCancellation()
                        let slice = UnsafeBufferPointer(rebasing: values[start..<min(start + encodeSliceLength, values.count)])
                        return encode(slice, leadingComma: i > 0 || start > 0, mapping: mapping)
                    }
                }
            }
        }
        return perGroup.flatMap { $0 }
    }
}

