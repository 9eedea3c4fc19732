/// libFuzzer's entry point: one input, every check.
///
/// The input is read two ways, so that mutations which break a length header still reach the JSON
/// layer: as a byte stream (the frame decoder's checks, then each complete frame's), and as one
/// frame body (framed, glued and split again, then its checks). Every choice the checks make comes
/// from `InputRandom`, seeded by the input, so an artifact replays exactly.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    var random = InputRandom(seed: bytes)
    var bodies = FrameChecks.checkStream(bytes, random: &random)
    FrameChecks.checkGlued(bytes, random: &random)
    if !bodies.contains(bytes) { bodies.append(bytes) }
    let servers = MessageChecks.Servers(parts: Int.random(in: 2...6, using: &random))
    runBlocking { [bodies] in
        for body in bodies {
            await MessageChecks.check(body, servers: servers)
        }
    }
    return 0
}
