/// The parallel squaring core: exact `UInt64` squares of `UInt32` inputs, order preserved.
///
/// Inputs of at least `parallelThreshold` elements are split into `parallelism` contiguous ranges,
/// each squared by a child task of one task group straight into one preallocated result; ranges are
/// squared in slices of `sliceLength` with a cancellation check between slices. Below the threshold
/// the work runs inline: a task group costs more than squaring a few thousand numbers.
public struct ParallelSquaring: Sendable {
    /// Below this many elements squaring runs inline. Measured with `squares-bench` (README): on
    /// 2 cores the group's spawn and join cost about as much as squaring ~32K numbers.
    public static let defaultParallelThreshold = 32_768
    /// Elements squared between two cancellation checks (~20 µs of work).
    public static let sliceLength = 65_536

    public let parallelism: Int
    public let parallelThreshold: Int

    public init(parallelism: Int, parallelThreshold: Int = ParallelSquaring.defaultParallelThreshold) {
        precondition(parallelism >= 1, "parallelism must be at least 1")
        precondition(parallelThreshold >= 1, "parallelThreshold must be at least 1")
        self.parallelism = parallelism
        self.parallelThreshold = parallelThreshold
    }

    /// The squares of `numbers`, in order, in a new buffer.
    /// - Throws: `CancellationError` if the current task is cancelled between two slices.
    public func squares(of numbers: OwnedBuffer<UInt32>) async throws -> OwnedBuffer<UInt64> {
        let count = numbers.count
        let output = OwnedBuffer<UInt64>(uninitializedCount: count)
        if count < parallelThreshold || parallelism == 1 {
            try Task.checkCancellation()
            squareSequentially(UnsafeBufferPointer(numbers.storage), into: output.storage)
            return output
        }
        let ranges = partition(count: count, parallelism: parallelism, minimumLength: max(1, parallelThreshold / 2))
        _ = try await forEachRange(ranges) { range in
            let input = numbers.storage, result = output.storage
            var start = range.lowerBound
            while start < range.upperBound {
                try Task.checkCancellation()
                let end = min(start + ParallelSquaring.sliceLength, range.upperBound)
                squareSequentially(
                    UnsafeBufferPointer(rebasing: input[start..<end]),
                    into: UnsafeMutableBufferPointer(rebasing: result[start..<end]))
                start = end
            }
        }
        return output
    }

    /// The squares of `numbers`, in order.
    /// - Throws: `CancellationError` if the current task is cancelled between two slices.
    public func squares(of numbers: [UInt32]) async throws -> [UInt64] {
        try await squares(of: OwnedBuffer(numbers)).array
    }
}
