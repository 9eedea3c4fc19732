/// The squaring kernel: exact, never wraps. `UInt32.max²` = 18446744065119617025 fits in `UInt64`.
@inlinable @inline(__always)
public func square(_ x: UInt32) -> UInt64 {
    let wide = UInt64(x)
    return wide &* wide  // cannot overflow: (2^32 - 1)^2 < 2^64
}

/// A map applied to each element where a codec writes it, so that an element-wise method runs
/// fused into the encoder's loop (decode → map → encode touches each number once) while the codec
/// itself knows nothing of the method. Generic, not a closure: each map gets its own specialised
/// loop.
public protocol ElementMap {
    static func apply(_ x: UInt32) -> UInt64
}

/// `calculate_squares`'s map.
public enum Squaring: ElementMap {
    @inlinable @inline(__always)
    public static func apply(_ x: UInt32) -> UInt64 { square(x) }
}

/// `Map.apply` of each of `input`, into `output`; both must have the same count. The loop every
/// element-wise path runs (inline, or over one range of `ParallelMap`), specialised per map.
@inlinable
public func mapSequentially<Map: ElementMap>(
    _ input: UnsafeBufferPointer<UInt32>, into output: UnsafeMutableBufferPointer<UInt64>, mapping: Map.Type
) {
    precondition(input.count == output.count, "input and output counts differ")
    guard let src = input.baseAddress, let dst = output.baseAddress else { return }
    for i in 0..<input.count {
        dst[i] = Map.apply(src[i])
    }
}
