/// The squaring kernel: exact, never wraps. `UInt32.max²` = 18446744065119617025 fits in `UInt64`.
@inlinable @inline(__always)
public func square(_ x: UInt32) -> UInt64 {
    let wide = UInt64(x)
    return wide &* wide  // cannot overflow: (2^32 - 1)^2 < 2^64
}

/// Squares `input` into `output` element by element; both must have the same count.
@inlinable
public func squareSequentially(_ input: UnsafeBufferPointer<UInt32>, into output: UnsafeMutableBufferPointer<UInt64>) {
    precondition(input.count == output.count, "input and output counts differ")
    guard let src = input.baseAddress, let dst = output.baseAddress else { return }
    for i in 0..<input.count {
        dst[i] = square(src[i])
    }
}
