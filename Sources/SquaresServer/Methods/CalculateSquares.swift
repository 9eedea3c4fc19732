import SquaresCore

/// `calculate_squares`: the exact squares of `UInt32`s, in order (since 1.1 also packed, as
/// `squaresPacked`). Everything but these three facts is `ElementwiseMethod`'s.
struct CalculateSquares: ElementwiseMethod {
    typealias Map = Squaring
    static let name = "calculate_squares"
    static let packedResultKey = "squaresPacked"
}
