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
    /// Below this many elements the map runs inline. Measured with `squares-bench` (`make bench`): on
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
        let output = OwnedBuffer<UInt64>(uninitializedCount: numbers.count)
        try await self.map(UnsafeBufferPointer(numbers.storage), into: output.storage, through: map)
        return output
    }

    /// `Map.apply` of each of `input` into `output` (the same count), in order, in place: the
    /// shared-memory path maps a client's segment with no copy. The caller keeps both alive until
    /// it returns. With `parallelism` 1 a big input is still mapped in slices, so that it stops
    /// when cancelled.
    /// - Throws: `CancellationError` if the current task is cancelled between two slices (the
    ///   slices mapped by then are written, the rest not).
    @inlinable
    public func map<Map: ElementMap>(
        _ input: UnsafeBufferPointer<UInt32>, into output: UnsafeMutableBufferPointer<UInt64>, through map: Map.Type
    ) async throws {
        precondition(input.count == output.count, "input and output counts differ")
        let count = input.count
        if count < parallelThreshold {
            try Task.checkCancellation()
            mapSequentially(input, into: output, mapping: map)
            return
        }
        let ranges = partition(count: count, parallelism: parallelism, minimumLength: max(1, parallelThreshold / 2))
        let buffers = MapBuffers(input: input, output: output)
        _ = try await forEachRange(ranges) { range in
            var start = range.lowerBound
            while start < range.upperBound {
                try Task.checkCancellation()
                let end = min(start + ParallelMap.sliceLength, range.upperBound)
                mapSequentially(
                    UnsafeBufferPointer(rebasing: buffers.input[start..<end]),
                    into: UnsafeMutableBufferPointer(rebasing: buffers.output[start..<end]), mapping: map)
                start = end
            }
        }
    }

    /// `Map.apply` of each of `numbers`, in order (for tests).
    func map<Map: ElementMap>(_ numbers: [UInt32], through map: Map.Type) async throws -> [UInt64] {
        try await self.map(OwnedBuffer(numbers), through: map).array
    }
}

/// The input and output of one `ParallelMap.map`, handed to its child tasks. Sendable by
/// contract: each child writes a disjoint range of `output`, and the caller waits for all of them.
@usableFromInline
struct MapBuffers: @unchecked Sendable {
    @usableFromInline let input: UnsafeBufferPointer<UInt32>
    @usableFromInline let output: UnsafeMutableBufferPointer<UInt64>

    @inlinable
    init(input: UnsafeBufferPointer<UInt32>, output: UnsafeMutableBufferPointer<UInt64>) {
        self.input = input
        self.output = output
    }
}
