/// The parallel core of the element-wise methods: `Map.apply` of each `UInt32` into an exact
/// `UInt64`, order preserved (`Squaring` for `calculate_squares`).
///
/// Inputs of at least `parallelThreshold` elements are split into `parallelism` contiguous ranges,
/// each mapped by a child task of one task group straight into one preallocated result; ranges are
/// mapped in slices of `sliceLength` with a cancellation check between slices. Below the threshold
/// the work runs inline: a task group costs more than squaring a few thousand numbers.
///
/// `map` is inlinable so that each map's loop is specialised where it is called, as the codecs'
/// are: unspecialised, every element would be a call through the map's witness table.
public struct ParallelMap: Sendable {
    /// Below this many elements the map runs inline. Measured with `squares-bench` (README): on
    /// 2 cores the group's spawn and join cost about as much as squaring ~32K numbers.
    public static let defaultParallelThreshold = 32_768
    /// Elements mapped between two cancellation checks (~20 µs of squaring).
    public static let sliceLength = 65_536

    public let parallelism: Int
    public let parallelThreshold: Int

    public init(parallelism: Int, parallelThreshold: Int = ParallelMap.defaultParallelThreshold) {
        precondition(parallelism >= 1, "parallelism must be at least 1")
        precondition(parallelThreshold >= 1, "parallelThreshold must be at least 1")
        self.parallelism = parallelism
        self.parallelThreshold = parallelThreshold
    }

    /// `Map.apply` of each of `numbers`, in order, in a new buffer.
    /// - Throws: `CancellationError` if the current task is cancelled between two slices.
    @inlinable
    public func map<Map: ElementMap>(_ numbers: OwnedBuffer<UInt32>, through map: Map.Type) async throws -> OwnedBuffer<UInt64> {
        let count = numbers.count
        let output = OwnedBuffer<UInt64>(uninitializedCount: count)
        if count < parallelThreshold || parallelism == 1 {
            try Task.checkCancellation()
            mapSequentially(UnsafeBufferPointer(numbers.storage), into: output.storage, mapping: map)
            return output
        }
        let ranges = partition(count: count, parallelism: parallelism, minimumLength: max(1, parallelThreshold / 2))
        _ = try await forEachRange(ranges) { range in
            let input = numbers.storage, result = output.storage
            var start = range.lowerBound
            while start < range.upperBound {
                try Task.checkCancellation()
                let end = min(start + ParallelMap.sliceLength, range.upperBound)
                mapSequentially(
                    UnsafeBufferPointer(rebasing: input[start..<end]),
                    into: UnsafeMutableBufferPointer(rebasing: result[start..<end]), mapping: map)
                start = end
            }
        }
        return output
    }

    /// `Map.apply` of each of `numbers`, in order (for tests).
    func map<Map: ElementMap>(_ numbers: [UInt32], through map: Map.Type) async throws -> [UInt64] {
        try await self.map(OwnedBuffer(numbers), through: map).array
    }
}
