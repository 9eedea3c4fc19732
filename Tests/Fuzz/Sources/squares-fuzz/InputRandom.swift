/// The run's choices (split points, piece counts, frame limits) drawn from a generator seeded by
/// the input itself: the same input always makes the same choices, so a saved artifact replays
/// exactly, and libFuzzer still explores them as it mutates the bytes.
struct InputRandom: RandomNumberGenerator {
    private var state: UInt64

    /// Seeded with the input's FNV-1a hash.
    init(seed bytes: [UInt8]) {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in bytes {
            hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3
        }
        state = hash
    }

    /// SplitMix64.
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// `count` split into consecutive chunk sizes at up to `maxCuts` random points; zero-length
    /// chunks included on purpose (a read that returns nothing new).
    mutating func chunks(of count: Int, maxCuts: Int = 8) -> [Int] {
        let cuts = (0..<Int.random(in: 0...maxCuts, using: &self)).map { _ in Int.random(in: 0...count, using: &self) }.sorted()
        var sizes: [Int] = []
        var previous = 0
        for cut in cuts + [count] {
            sizes.append(cut - previous)
            previous = cut
        }
        return sizes
    }
}
