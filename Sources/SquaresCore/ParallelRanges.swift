/// Splits `0..<count` into at most `parallelism` contiguous ranges of nearly equal length, each at
/// least `minimumLength` long (one range when `count` is small). Empty for `count == 0`.
public func partition(count: Int, parallelism: Int, minimumLength: Int) -> [Range<Int>] {
    precondition(count >= 0 && parallelism >= 1 && minimumLength >= 1)
    guard count > 0 else { return [] }
    let parts = max(1, min(parallelism, count / minimumLength))
    let base = count / parts, extra = count % parts
    var ranges: [Range<Int>] = []
    ranges.reserveCapacity(parts)
    var start = 0
    for part in 0..<parts {
        let end = start + base + (part < extra ? 1 : 0)
        ranges.append(start..<end)
        start = end
    }
    return ranges
}

/// Runs `body` once per range, the first inline on the calling task and the rest as child tasks of
/// one task group, and returns the results in range order. Every child is awaited before return.
public func forEachRange<Result: Sendable>(
    _ ranges: [Range<Int>],
    _ body: @escaping @Sendable (Range<Int>) throws -> Result
) async throws -> [Result] {
    switch ranges.count {
    case 0: return []
    case 1: return [try body(ranges[0])]
    default:
        return try await withThrowingTaskGroup(of: (Int, Result).self) { group in
            for index in ranges.indices.dropFirst() {
                let range = ranges[index]
                group.addTask { (index, try body(range)) }
            }
            var results = [Result?](repeating: nil, count: ranges.count)
            results[0] = try body(ranges[0])
            for try await (index, result) in group {
                results[index] = result
            }
            return results.map { $0! }
        }
    }
}
