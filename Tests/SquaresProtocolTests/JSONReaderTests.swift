import Testing
@testable import SquaresProtocol

@Suite("JSON reader and writer")
struct JSONReaderTests {
    @Test("values of every kind parse and write back", arguments: [
        "null", "true", "false", "0", "-1.5e+3", "12345678901234567890", "\"a\"", "[]", "{}",
        "{\"a\":[1,\"b\",null],\"c\":{\"d\":false}}", "[1.5,2]", "\"\\\"\\\\\\n\\t\"",
    ])
    func roundTrip(text: String) async throws {
        let frame = try await parse(text)
        var writer = JSONWriter()
        writer.write(frame)
        #expect(String(decoding: writer.bytes, as: UTF8.self) == text)
    }

    @Test("string escapes decode, surrogate pairs included")
    func escapes() async throws {
        let frame = try await parse(#""\u0041\u00e9\ud83d\ude00\/\b\f\r""#)
        #expect(frame == .string("Aé😀/\u{8}\u{C}\r"))
    }

    @Test("a lone surrogate becomes U+FFFD")
    func loneSurrogate() async throws {
        #expect(try await parse(#""\ud800x""#) == .string("\u{FFFD}x"))
    }

    @Test("not JSON is a parse error", arguments: [
        "", " ", "nul", "tru", "[1,2", "{\"a\"}", "{\"a\":1,}", "[1,]", "01", "1.", ".5", "1e", "+1", "\"abc", "\"a\u{1}\"",
        "\"\\x\"", "\"\\u12\"", "{1:2}", "[1] [2]", "{\"a\":1}}", "NaN", "'a'", "\u{FEFF}{}",
    ])
    func invalid(text: String) async {
        await #expect(throws: JSONParseError.self) { _ = try await parse(text) }
    }

    @Test("invalid UTF-8 is a parse error", arguments: [[0x22, 0xFF, 0x22], [0x22, 0xC3, 0x22], [0x22, 0xED, 0xA0, 0x80, 0x22], [0xFF]])
    func invalidUTF8(bytes: [UInt8]) async {
        await #expect(throws: JSONParseError.self) { _ = try await JSONReader().parse(bytes) }
    }

    @Test("nesting deeper than the limit is refused without exhausting the stack")
    func nesting() async throws {
        let limit = ProtocolConstants.maxNestingDepth
        _ = try await parse(String(repeating: "[", count: limit) + String(repeating: "]", count: limit))
        for depth in [limit + 1, 100_000] {
            await #expect(throws: JSONParseError.self) {
                _ = try await parse(String(repeating: "[", count: depth) + String(repeating: "]", count: depth))
            }
        }
        await #expect(throws: JSONParseError.self) { _ = try await parse(String(repeating: "{\"a\":", count: 100_000)) }
    }

    @Test("a parallel parse puts each big array back in its place, or fails where one pass fails")
    func parallelParse() async throws {
        let text = #"[{"a":[1,2,3],"b":[[4,5],"c"]},[6,7],[8,9,10],[],{"d":[11]}]"#
        let onePass = try JSONReader().parse(FrameBytes(Array(text.utf8)))
        let parallel = try await JSONReader(parallelSpanBytes: 1).parse(Array(text.utf8), parallelism: 3)
        #expect(parallel == onePass)
        guard case .array(let items) = parallel, items.count == 5, case .integers(let array) = items[1] else {
            Issue.record("not the expected shape"); return
        }
        #expect(array.elements == [6, 7])
        for broken in [#"{"a":[1,2,,3]}"#, #"{"a":[1,01]}"#, #"[[1,2],[3,-]]"#] {
            let offset = { () throws(JSONParseError) -> Int in _ = try JSONReader().parse(FrameBytes(Array(broken.utf8))); return -1 }
            var expected = -1
            do { expected = try offset() } catch { expected = error.offset }
            await #expect(throws: JSONParseError(offset: expected, reason: "invalid number array"), "\(broken)") {
                _ = try await JSONReader(parallelSpanBytes: 1).parse(Array(broken.utf8), parallelism: 2)
            }
        }
    }

    @Test("duplicate keys: the last one wins")
    func duplicateKeys() async throws {
        guard case .object(let object) = try await parse(#"{"a":1,"a":2}"#) else { Issue.record("not an object"); return }
        #expect(object["a"] == .number("2"))
    }

    @Test("control characters in strings are escaped on output")
    func writerEscapes() {
        #expect(String(decoding: JSONWriter.encode(.string("a\u{1}\u{1F}\"")), as: UTF8.self) == #""a\u0001\u001f\"""#)
    }
}
