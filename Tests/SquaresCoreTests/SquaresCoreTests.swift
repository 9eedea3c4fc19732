import Testing
@testable import SquaresCore

@Suite("Squaring core")
struct SquaresCoreTests {
    @Test("edge values square exactly, with no UInt32 wrap-around",
          arguments: [(UInt32(0), UInt64(0)), (1, 1), (65_535, 4_294_836_225), (65_536, 4_294_967_296),
                      (4_294_967_295, 18_446_744_065_119_617_025)])
    func edgeValues(input: UInt32, expected: UInt64) async throws {
        #expect(square(input) == expected)
        #expect(try await ParallelMap(parallelism: 2).map([input], through: Squaring.self) == [expected])
    }

    @Test("an empty input gives an empty result")
    func empty() async throws {
        #expect(try await ParallelMap(parallelism: 4).map([], through: Squaring.self) == [])
    }

    @Test("sizes around every chunk boundary equal the sequential result", arguments: [
        1, 2, 3, 7, 31, 32, 33,
        ParallelMap.defaultParallelThreshold - 1, ParallelMap.defaultParallelThreshold, ParallelMap.defaultParallelThreshold + 1,
        ParallelMap.sliceLength - 1, ParallelMap.sliceLength, ParallelMap.sliceLength + 1,
        2 * ParallelMap.sliceLength + 1, 3 * ParallelMap.defaultParallelThreshold + 5,
    ])
    func boundaries(count: Int) async throws {
        var generator = SystemRandomNumberGenerator()
        let numbers = (0..<count).map { _ in UInt32.random(in: 0...UInt32.max, using: &generator) }
        let expected = numbers.map { UInt64($0) * UInt64($0) }
        for parallelism in [1, 2, 3, 8] {
            let core = ParallelMap(parallelism: parallelism)
            #expect(try await core.map(numbers, through: Squaring.self) == expected, "parallelism \(parallelism), count \(count)")
            let eager = ParallelMap(parallelism: parallelism, parallelThreshold: 1)
            #expect(try await eager.map(numbers, through: Squaring.self) == expected, "eager parallelism \(parallelism), count \(count)")
        }
    }

    @Test("a cancelled task stops with CancellationError")
    func cancellation() async throws {
        let numbers = OwnedBuffer<UInt32>([UInt32](repeating: 7, count: 4 * ParallelMap.sliceLength))
        let task = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await ParallelMap(parallelism: 2).map(numbers, through: Squaring.self)
        }
        await #expect(throws: CancellationError.self) { try await task.value }
    }

    @Test("the in-place map writes the given output, inline or in parallel pieces", arguments: [0, 5, 100_001])
    func inPlace(count: Int) async throws {
        let numbers = OwnedBuffer((0..<count).map { UInt32(truncatingIfNeeded: $0 &* 2_654_435_761) })
        for parallelism in [1, 3] {
            let output = OwnedBuffer<UInt64>([UInt64](repeating: .max, count: count))
            try await ParallelMap(parallelism: parallelism).map(UnsafeBufferPointer(numbers.storage), into: output.storage, through: Squaring.self)
            #expect(output.array == numbers.array.map { UInt64($0) * UInt64($0) }, "parallelism \(parallelism)")
        }
    }

    @Test("with parallelism 1 a big map still stops at the next slice once cancelled")
    func cancelledBetweenSlices() async throws {
        let count = 3 * ParallelMap.sliceLength
        let numbers = OwnedBuffer<UInt32>([UInt32](repeating: 5, count: count))
        let output = OwnedBuffer<UInt64>([UInt64](repeating: 0, count: count))
        let task = Task {
            try await ParallelMap(parallelism: 1).map(UnsafeBufferPointer(numbers.storage), into: output.storage, through: CancellingSquares.self)
        }
        await #expect(throws: CancellationError.self) { try await task.value }
        #expect(output.storage[..<ParallelMap.sliceLength].allSatisfy { $0 == 25 }, "the first slice is mapped")
        #expect(output.storage[ParallelMap.sliceLength...].allSatisfy { $0 == 0 }, "no slice after the cancellation")
    }

    @Test("partition covers the range in order with nearly equal parts")
    func partitionShape() {
        for count in [0, 1, 5, 100, 1001] {
            for parallelism in [1, 2, 3, 7] {
                let ranges = partition(count: count, parallelism: parallelism, minimumLength: 10)
                #expect(ranges.map(\.count).reduce(0, +) == count)
                #expect(zip(ranges, ranges.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound })
                #expect(ranges.first?.lowerBound ?? 0 == 0)
                #expect(ranges.count <= parallelism)
                if let largest = ranges.map(\.count).max(), let smallest = ranges.map(\.count).min() {
                    #expect(largest - smallest <= 1)
                }
            }
        }
    }

    @Test("forEachRange returns results in range order")
    func forEachRangeOrder() async throws {
        let ranges = partition(count: 100, parallelism: 7, minimumLength: 1)
        let results = try await forEachRange(ranges) { $0.lowerBound }
        #expect(results == ranges.map(\.lowerBound))
    }
}

/// Squares, and cancels the task it runs in at its first element.
enum CancellingSquares: ElementMap {
    static func apply(_ x: UInt32) -> UInt64 {
        withUnsafeCurrentTask { $0?.cancel() }
        return square(x)
    }
}
