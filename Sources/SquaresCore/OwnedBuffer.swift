/// A fixed-size, heap-allocated buffer of trivial elements that child tasks can fill in disjoint
/// ranges. It exists because an `Array`'s storage cannot be borrowed across an `await`: with it the
/// parallel paths write their results in place instead of copying them into an array afterwards.
///
/// Sendable by contract: concurrent writers must touch disjoint ranges, and readers must wait for
/// the writers (a task group's `await` provides that ordering).
public final class OwnedBuffer<Element: BitwiseCopyable>: @unchecked Sendable {
    public let storage: UnsafeMutableBufferPointer<Element>

    /// A buffer of `count` uninitialised elements (trivial types need no initialisation to be
    /// overwritten; every position must be written before it is read).
    public init(uninitializedCount count: Int) {
        storage = .allocate(capacity: count)
    }

    /// A buffer holding a copy of `elements`.
    public convenience init(_ elements: some Collection<Element>) {
        self.init(uninitializedCount: elements.count)
        _ = storage.initialize(from: elements)
    }

    deinit { storage.deallocate() }

    public var count: Int { storage.count }

    public var array: [Element] { Array(storage) }
}
