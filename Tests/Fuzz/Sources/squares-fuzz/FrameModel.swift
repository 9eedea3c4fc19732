@testable import SquaresProtocol

/// SPEC.md's framing rule written the obvious way over a whole input, as the reference that
/// `FrameDecoder` (a state machine fed in arbitrary pieces) must agree with.
enum FrameModel {
    enum Event: Equatable {
        case frame([UInt8])
        case oversized(length: Int)
        /// Only `FrameDecoder.endOfInput` reports a cut frame: from `feed`, a mismatch.
        case truncated

        init(_ event: FrameEvent) {
            switch event {
            case .frame(let bytes): self = .frame(bytes.array)
            case .oversized(let length): self = .oversized(length: length)
            case .truncated: self = .truncated
            }
        }
    }

    /// The events of `bytes`, and whether the input ends between frames. An oversized frame is
    /// reported as soon as its header is read, whether or not its body follows.
    static func split(_ bytes: [UInt8], maxFrameBytes: Int) -> (events: [Event], atBoundary: Bool) {
        var events: [Event] = []
        var at = 0
        while bytes.count - at >= 4 {
            let length = bytes[at..<at + 4].reduce(0) { $0 << 8 | Int($1) }
            at += 4
            if length > maxFrameBytes {
                events.append(.oversized(length: length))
            } else if bytes.count - at >= length {
                events.append(.frame(Array(bytes[at..<at + length])))
            }
            guard bytes.count - at >= length else { return (events, false) }
            at += length
        }
        return (events, at == bytes.count)
    }
}
