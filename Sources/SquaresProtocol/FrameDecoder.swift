import SquaresCore

/// A frame's body: one allocation of exactly its length, filled once and then only read, shared by
/// the tasks that decode it.
public typealias FrameBytes = OwnedBuffer<UInt8>

/// What the frame decoder recognised in the byte stream: the one event type from the transport
/// to the server.
public enum FrameEvent: Sendable, Equatable {
    /// A complete frame body.
    case frame(FrameBytes)
    /// A header announced `length` bytes, more than the limit. The body is being skipped.
    case oversized(length: Int)
    /// The input ended inside a frame (`FrameDecoder.endOfInput`); `position` says where.
    case truncated(position: String)
}

/// Splits a byte stream into length-prefixed frames: a 4-byte unsigned big-endian length, then that
/// many bytes. A pure state machine: fed bytes in any split, it emits every complete frame and keeps
/// the rest. A frame longer than `maxFrameBytes` is reported once and its body is skipped as it
/// arrives, never buffered, so the stream stays in sync and memory stays bounded.
public struct FrameDecoder: Sendable {
    private enum State: Sendable {
        case header(value: UInt32, have: Int)
        case body(buffer: FrameBytes, filled: Int)
        case skipping(remaining: Int)
    }

    let maxFrameBytes: Int
    private var state: State = .header(value: 0, have: 0)

    public init(maxFrameBytes: Int) {
        precondition(maxFrameBytes >= 0)
        self.maxFrameBytes = maxFrameBytes
    }

    /// True between frames: an end of input here is a clean end.
    public var isAtFrameBoundary: Bool {
        if case .header(_, 0) = state { return true }
        return false
    }

    /// What the end of the input means here: nothing at a frame boundary, else a truncated frame.
    public func endOfInput() -> FrameEvent? {
        isAtFrameBoundary ? nil : .truncated(position: positionDescription)
    }

    /// Where the decoder stands, for the log line of an end of input inside a frame.
    var positionDescription: String {
        switch state {
        case .header(_, let have): "inside a frame header (\(have) of 4 bytes)"
        case .body(let buffer, let filled): "inside a frame body (\(filled) of \(buffer.count) bytes)"
        case .skipping(let remaining): "inside a skipped oversized frame (\(remaining) bytes missing)"
        }
    }

    /// Consumes all of `bytes`, calling `emit` for each event in stream order.
    public mutating func feed(_ bytes: UnsafeRawBufferPointer, _ emit: (FrameEvent) throws -> Void) rethrows {
        var offset = 0
        let count = bytes.count
        while offset < count {
            switch state {
            case .header(var value, var have):
                while have < 4 && offset < count {
                    value = value << 8 | UInt32(bytes[offset])
                    have += 1
                    offset += 1
                }
                if have < 4 {
                    state = .header(value: value, have: have)
                } else {
                    try startFrame(length: Int(value), emit)
                }
            case .body(let buffer, let filled):
                let take = min(buffer.count - filled, count - offset)
                UnsafeMutableRawBufferPointer(rebasing: UnsafeMutableRawBufferPointer(buffer.storage)[filled..<filled + take])
                    .copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + take]))
                offset += take
                if filled + take == buffer.count {
                    state = .header(value: 0, have: 0)
                    try emit(.frame(buffer))
                } else {
                    state = .body(buffer: buffer, filled: filled + take)
                }
            case .skipping(let remaining):
                let take = min(remaining, count - offset)
                offset += take
                state = take == remaining ? .header(value: 0, have: 0) : .skipping(remaining: remaining - take)
            }
        }
        // A zero-length frame completes with its header: emit it even when no byte follows.
        if case .body(let buffer, 0) = state, buffer.count == 0 {
            state = .header(value: 0, have: 0)
            try emit(.frame(buffer))
        }
    }

    /// Convenience for tests and small inputs.
    mutating func feed(_ bytes: [UInt8], _ emit: (FrameEvent) throws -> Void) rethrows {
        try bytes.withUnsafeBytes { try feed($0, emit) }
    }

    private mutating func startFrame(length: Int, _ emit: (FrameEvent) throws -> Void) rethrows {
        if length > maxFrameBytes {
            state = .skipping(remaining: length)
            try emit(.oversized(length: length))
        } else {
            state = .body(buffer: FrameBytes(uninitializedCount: length), filled: 0)
        }
    }
}

/// The 4-byte big-endian length prefix of a frame of `length` bytes.
@inlinable
public func frameHeader(length: Int) -> [UInt8] {
    precondition(length >= 0 && length <= Int(UInt32.max), "frame length out of range")
    let n = UInt32(length)
    return [UInt8(n >> 24), UInt8(truncatingIfNeeded: n >> 16), UInt8(truncatingIfNeeded: n >> 8), UInt8(truncatingIfNeeded: n)]
}

extension OwnedBuffer: Equatable where Element: Equatable {
    /// Equal contents (for tests).
    public static func == (lhs: OwnedBuffer, rhs: OwnedBuffer) -> Bool {
        lhs.storage.elementsEqual(rhs.storage)
    }
}
