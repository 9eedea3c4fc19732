/// Stops the run when an invariant does not hold. libFuzzer treats the trap as a crash: it prints
/// the message and the stack, and saves the input as an artifact to reproduce it with.
func require(_ condition: Bool, _ message: @autoclosure () -> String, file: StaticString = #fileID, line: UInt = #line) {
    if !condition {
        fatalError("invariant broken: \(message())", file: file, line: line)
    }
}

/// Bytes for a failure message: printable ASCII as is, the rest as `\xHH`, cut at 200 bytes.
func show(_ bytes: some Collection<UInt8>) -> String {
    var text = ""
    for byte in bytes.prefix(200) {
        if (0x20..<0x7F).contains(byte) && byte != UInt8(ascii: "\\") {
            text.unicodeScalars.append(Unicode.Scalar(byte))
        } else {
            let hex = String(byte, radix: 16)
            text += "\\x" + (hex.count == 1 ? "0" + hex : hex)
        }
    }
    return bytes.count > 200 ? text + "... (\(bytes.count) bytes)" : text
}
