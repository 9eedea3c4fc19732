import SquaresCore

/// `calculate_squares`: the exact squares of `UInt32`s, in order (since 1.1 also packed, as
/// `squaresPacked`; since 1.2 in shared memory, `squaresShm`). Everything but these facts is
/// `ElementwiseMethod`'s.
struct CalculateSquares: ElementwiseMethod {
    typealias Map = Squaring
    static let name = "calculate_squares"
    static let packedResultKey = "squaresPacked"
    static let shmResultKey = "squaresShm"
}
