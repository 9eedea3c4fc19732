import Foundation
import Logging
@testable import SquaresProtocol
import Testing
@testable import SquaresServer

@Suite("Server, driven in process")
struct ServerTests {
    @Test("a request is answered with the exact squares")
    func squares() async {
        let harness = Harness()
        harness.send(request(1, "calculate_squares", #"{"numbers":[1,2,4294967295]}"#))
        #expect(await harness.replies(1) == [#"{"jsonrpc":"2.0","id":1,"result":[1,4,18446744065119617025]}"#])
        #expect(await harness.finish() == .success)
    }

    @Test("a big request is squared in parallel pieces and joined in order")
    func bigRequest() async {
        let harness = Harness()
        let values = (0..<70_000).map { UInt32($0) &* 2_654_435_761 }
        harness.send(request(9, "calculate_squares", "[[" + values.map(String.init).joined(separator: ",") + "]]"))
        let expected = #"{"jsonrpc":"2.0","id":9,"result":["# + values.map { String(UInt64($0) * UInt64($0)) }.joined(separator: ",") + "]}"
        #expect(await harness.replies(1) == [expected])
        #expect(await harness.finish() == .success)
    }

    @Test("a batch is answered in one frame; notifications get no entry")
    func batch() async {
        let harness = Harness()
        harness.send("[" + request(1, "calculate_squares", "[[3]]") + #",{"jsonrpc":"2.0","method":"calculate_squares","params":[[1]]},5,"# + request(2, "nope") + "]")
        let replies = await harness.replies(1)
        #expect(replies.count == 1)
        #expect(replies.first?.hasPrefix(#"[{"jsonrpc":"2.0","id":1,"result":[9]},{"jsonrpc":"2.0","id":null,"error":{"code":-32600"#) == true)
        #expect(replies.first?.contains(#"{"jsonrpc":"2.0","id":2,"error":{"code":-32601,"message":"Method not found: nope","data":{"method":"nope"}}}]"#) == true)
        #expect(await harness.finish() == .success)
    }

    @Test("notifications alone produce no frame at all")
    func notificationsOnly() async {
        let harness = Harness()
        harness.send(#"{"jsonrpc":"2.0","method":"calculate_squares","params":[[2]]}"#)
        harness.send(#"[{"jsonrpc":"2.0","method":"x"},{"jsonrpc":"2.0","method":"$/cancel","params":{"id":1}}]"#)
        harness.send(request(3, "calculate_squares", "[[3]]"))
        #expect(await harness.replies(1) == [#"{"jsonrpc":"2.0","id":3,"result":[9]}"#])
        #expect(await harness.finish() == .success)
        #expect(harness.writer.written.count == 1)
    }

    @Test("a quick request is answered before a slow one sent earlier")
    func outOfOrder() async {
        let harness = Harness()
        harness.send(request(1, "test/sleep", #"{"ms":1000}"#))
        harness.send(request(2, "calculate_squares", "[[5]]"))
        let replies = await harness.replies(2)
        #expect(replies == [#"{"jsonrpc":"2.0","id":2,"result":[25]}"#, #"{"jsonrpc":"2.0","id":1,"result":null}"#])
        #expect(await harness.finish() == .success)
    }

    @Test("$/cancel stops a running request, which answers -32800; others go on")
    func cancellation() async {
        let harness = Harness()
        harness.send(request(1, "test/sleep", #"{"ms":60000}"#))
        harness.send(request(2, "test/sleep", #"{"ms":10}"#))
        harness.send(#"{"jsonrpc":"2.0","method":"$/cancel","params":{"id":1}}"#)
        let replies = await harness.replies(2)
        #expect(Set(replies) == [
            #"{"jsonrpc":"2.0","id":1,"error":{"code":-32800,"message":"Request cancelled"}}"#,
            #"{"jsonrpc":"2.0","id":2,"result":null}"#,
        ])
        #expect(await harness.finish() == .success)
    }

    @Test("a $/cancel request is answered null, and cancels only requests read before it")
    func cancelOrder() async {
        let harness = Harness()
        harness.send(#"{"jsonrpc":"2.0","id":7,"method":"$/cancel","params":{"id":7}}"#)
        harness.send("[" + #"{"jsonrpc":"2.0","method":"$/cancel","params":{"id":1}}"# + "," + request(1, "calculate_squares", "[[2]]") + "]")
        let replies = await harness.replies(2)
        #expect(Set(replies) == [#"{"jsonrpc":"2.0","id":7,"result":null}"#, #"[{"jsonrpc":"2.0","id":1,"result":[4]}]"#])
        #expect(await harness.finish() == .success)
    }

    @Test("cancelling a big request stops its encoding early")
    func cancelBigRequest() async {
        let harness = Harness(ServerConfiguration(parallelism: 1))
        let numbers = "[[" + Array(repeating: "7", count: 300_000).joined(separator: ",") + "]]"
        harness.send(request(1, "calculate_squares", numbers))
        harness.send(#"{"jsonrpc":"2.0","method":"$/cancel","params":{"id":1}}"#)
        #expect(await harness.replies(1) == [#"{"jsonrpc":"2.0","id":1,"error":{"code":-32800,"message":"Request cancelled"}}"#])
        #expect(await harness.finish() == .success)
    }

    @Test("a cancel in the same batch as its request cancels it")
    func cancelInBatch() async {
        let harness = Harness()
        harness.send("[" + request(7, "test/sleep", #"{"ms":60000}"#) + #",{"jsonrpc":"2.0","method":"$/cancel","params":{"id":7}}]"#)
        #expect(await harness.replies(1) == [#"[{"jsonrpc":"2.0","id":7,"error":{"code":-32800,"message":"Request cancelled"}}]"#])
        #expect(await harness.finish() == .success)
    }

    @Test("at the in-flight bound the server stops taking input until a request finishes")
    func inFlightBound() async {
        let harness = Harness(ServerConfiguration(parallelism: 2, maxInFlight: 2, testMethods: true))
        // Sleeps long enough that the check below comes first even on a loaded machine.
        for id in 1...4 { harness.send(request(id, "test/sleep", #"{"ms":1500}"#)) }
        try? await Task.sleep(for: .milliseconds(300))
        #expect(harness.inbound.taken.count == 2, "took \(harness.inbound.taken.count) events with 2 in flight")
        #expect(harness.writer.written.isEmpty)
        #expect(await harness.replies(4).count == 4)
        #expect(harness.inbound.taken.count == 4)
        #expect(await harness.finish() == .success)
    }

    @Test("an oversized frame is answered with both sizes and the next frame is served")
    func oversized() async {
        let harness = Harness(ServerConfiguration(parallelism: 2, maxFrameBytes: 100))
        harness.send(.oversized(length: 5000))
        harness.send(request(1, "calculate_squares", "[[6]]"))
        // Two frames, two child tasks: the replies may come in either order.
        #expect(Set(await harness.replies(2)) == [
            #"{"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":"Frame too large","data":{"frameBytes":5000,"maxFrameBytes":100}}}"#,
            #"{"jsonrpc":"2.0","id":1,"result":[36]}"#,
        ])
        #expect(await harness.finish() == .success)
    }

    @Test("end of input inside a frame finishes in-flight work, then reports a truncated input")
    func truncated() async {
        let harness = Harness()
        harness.send(request(1, "test/sleep", #"{"ms":100}"#))
        harness.send(.truncated(position: "inside a frame body (3 of 10 bytes)"))
        #expect(await harness.run.value == .truncatedInput)
        #expect(harness.writer.written == [#"{"jsonrpc":"2.0","id":1,"result":null}"#])
    }

    @Test("end of input at a boundary finishes in-flight work and succeeds")
    func cleanEnd() async {
        let harness = Harness()
        harness.send(request(1, "test/sleep", #"{"ms":100}"#))
        #expect(await harness.finish() == .success)
        #expect(harness.writer.written == [#"{"jsonrpc":"2.0","id":1,"result":null}"#])
    }

    @Test("shutdown is answered, in-flight work finishes, and later frames are not read")
    func shutdown() async {
        let harness = Harness()
        harness.send(request(1, "test/sleep", #"{"ms":100}"#))
        harness.send(request(2, "shutdown"))
        harness.send(request(3, "calculate_squares", "[[2]]"))
        #expect(await harness.run.value == .success)
        #expect(Set(harness.writer.written) == [#"{"jsonrpc":"2.0","id":1,"result":null}"#, #"{"jsonrpc":"2.0","id":2,"result":null}"#])
        #expect(harness.inbound.taken.count == 2)
    }

    @Test("a parse error answers with a null id and the worker goes on")
    func parseError() async {
        let harness = Harness()
        harness.send("{not json")
        harness.send(request(1, "calculate_squares", "[[1]]"))
        let replies = await harness.replies(2)  // in either order
        #expect(replies.count == 2)
        #expect(replies.contains { $0.hasPrefix(#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700"#) })
        #expect(replies.contains(#"{"jsonrpc":"2.0","id":1,"result":[1]}"#))
        #expect(await harness.finish() == .success)
    }

    @Test("test/sleep is not served without --test-methods")
    func testMethodsOff() async {
        let harness = Harness(ServerConfiguration(parallelism: 1))
        harness.send(request(1, "test/sleep", #"{"ms":1}"#))
        #expect(await harness.replies(1).first?.contains(#""code":-32601"#) == true)
        #expect(await harness.finish() == .success)
    }

    @Test("initialize reports the version, limits, parallelism and encodings (shm where served)", arguments: [true, false])
    func initialize(sharedMemory: Bool) async {
        let harness = Harness(ServerConfiguration(parallelism: 3, maxInFlight: 5, maxFrameBytes: 1000, sharedMemory: sharedMemory))
        harness.send(request(1, "initialize", "{}"))
        let encodings = sharedMemory ? #"["json","packed","shm"]"# : #"["json","packed"]"#
        #expect(await harness.replies(1) == [
            #"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"1.2","serverInfo":{"name":"squares-worker","version":"0.1.0"},"methods":["initialize","calculate_squares","shutdown","$/cancel"],"limits":{"maxFrameBytes":1000,"maxInFlight":5,"maxNumber":4294967295},"parallelism":3,"encodings":"# + encodings + "}}",
        ])
        #expect(await harness.finish() == .success)
    }

    @Test("a packed request is answered with packed squares; a bad one names invalid_packed")
    func packed() async {
        let harness = Harness()
        harness.send(request(1, "calculate_squares", #"{"numbersPacked":"AQAAAAIAAAD/////"}"#))
        harness.send(request(2, "calculate_squares", #"{"numbersPacked":"AQAAAA="}"#))
        let replies = await harness.replies(2)
        #expect(replies.contains(#"{"jsonrpc":"2.0","id":1,"result":{"squaresPacked":"AQAAAAAAAAAEAAAAAAAAAAEAAAD+////"}}"#))
        #expect(replies.contains { $0.hasPrefix(#"{"jsonrpc":"2.0","id":2,"error":{"code":-32602"#) && $0.hasSuffix(#""data":{"reason":"invalid_packed"}}}"#) })
        #expect(await harness.finish() == .success)
    }

    @Test("the cancellation registry forgets finished requests")
    func registryCleanup() async {
        let registry = CancellationRegistry()
        let a = registry.register(.number("1")), b = registry.register(.number("1"))
        #expect(registry.count == 2)
        registry.cancel(.number("1"))
        #expect(a.isFired && b.isFired)
        registry.unregister(.number("1"), a)
        registry.unregister(.number("1"), b)
        #expect(registry.count == 0)
    }
}

@Suite("Reading a frame: Server.prepare")
struct PrepareTests {
    let server: Server = {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return Server(configuration: ServerConfiguration(parallelism: 2, testMethods: true), logger: logger)
    }()

    func prepared(_ text: String) async -> PendingReply { await server.prepare(.frame(FrameBytes(Array(text.utf8)))) }

    /// The reply of a small frame, which the reader thread computes itself; nil for a frame left
    /// to a child task, or with nothing to send.
    func answeredNow(_ text: String) async -> String? {
        let pending = await prepared(text)
        guard pending.isSmall, let respond = pending.respond, let frame = await respond() else { return nil }
        return String(decoding: frame.segments.joined(), as: UTF8.self)
    }

    func isLeftToAChildTask(_ text: String) async -> Bool { await !prepared(text).isSmall }

    @Test("small requests are answered by the reader: results, errors, batches and lifecycle methods")
    func answeredAtOnce() async {
        #expect(await answeredNow(request(1, "calculate_squares", "[[1, 2, 4294967295]]")) == #"{"jsonrpc":"2.0","id":1,"result":[1,4,18446744065119617025]}"#)
        #expect(await answeredNow(request(2, "calculate_squares", #"{"numbersPacked":"AQAAAAIAAAD/////"}"#)) == #"{"jsonrpc":"2.0","id":2,"result":{"squaresPacked":"AQAAAAAAAAAEAAAAAAAAAAEAAAD+////"}}"#)
        #expect(await answeredNow(request(3, "calculate_squares", "[[1, -2]]"))?.contains(#""data":{"index":1,"reason":"negative"}"#) == true)
        #expect(await answeredNow(request(4, "calculate_squares", #"{"numbersPacked":"AQ="}"#))?.contains(#""reason":"invalid_packed""#) == true)
        #expect(await answeredNow(request(5, "calculate_squares", "[[]]")) == #"{"jsonrpc":"2.0","id":5,"result":[]}"#)
        #expect(await answeredNow(request(6, "nope"))?.contains(#""code":-32601"#) == true)
        #expect(await answeredNow("{not json")?.hasPrefix(#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700"#) == true)
        #expect(await answeredNow(request(7, "$/cancel", #"{"id":1}"#)) == #"{"jsonrpc":"2.0","id":7,"result":null}"#)
        #expect(await answeredNow("[" + request(8, "calculate_squares", "[[3]]") + "," + request(9, "initialize") + "]")?.hasPrefix(#"[{"jsonrpc":"2.0","id":8,"result":[9]},{"jsonrpc":"2.0","id":9,"result":{"protocolVersion""#) == true)
        let shutdown = await prepared(request(10, "shutdown"))
        #expect(shutdown.stopsReading == .success)
        #expect(shutdown.isSmall)
    }

    @Test("waiting and big work is left to a child task")
    func leftToAChildTask() async {
        #expect(await isLeftToAChildTask(request(1, "test/sleep", #"{"ms":1}"#)))
        let big = Array(repeating: "4294967295", count: MethodContext.inlineWorkLimit).joined(separator: ",")
        #expect(await isLeftToAChildTask(request(2, "calculate_squares", "[[" + big + "]]")))
        #expect(await answeredNow(request(3, "calculate_squares", "[[" + big.dropLast(11) + "]]")) != nil, "one element under the policy")
        // Over 256 KiB of text with parallelism 2: decoded in parallel pieces while read.
        let parallel = Array(repeating: "4294967295", count: 30_000).joined(separator: ",")
        #expect(await isLeftToAChildTask(request(4, "calculate_squares", #"{"numbers":["# + parallel + "]}")))
        #expect(await isLeftToAChildTask("[" + request(5, "calculate_squares", "[[1]]") + "," + request(6, "test/sleep", #"{"ms":1}"#) + "]"))
    }

    @Test("notifications have their effect and nothing to send")
    func notifications() async {
        #expect(await prepared(#"{"jsonrpc":"2.0","method":"calculate_squares","params":[[1]]}"#).respond == nil, "a notification left work")
        #expect(await prepared(#"{"jsonrpc":"2.0","method":"shutdown"}"#).stopsReading == .success)
        #expect(await prepared(#"{"jsonrpc":"2.0","method":"shutdown","params":{"now":true}}"#).stopsReading == nil, "bad params: no shutdown")
    }

    @Test("initialize lists exactly the registered methods, test/sleep only when served")
    func advertisedMethods() async throws {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let plain = Server(configuration: ServerConfiguration(parallelism: 1), logger: logger)
        let reply = try #require(await plain.prepare(.frame(FrameBytes(Array(request(1, "initialize").utf8)))).respond?())
        #expect(String(decoding: reply.segments.joined(), as: UTF8.self).contains(#""methods":["initialize","calculate_squares","shutdown","$/cancel"]"#))
        #expect(await answeredNow(request(2, "initialize"))?.contains(#""methods":["initialize","calculate_squares","shutdown","$/cancel","test/sleep"]"#) == true)
    }

    @Test("method names agree with protocol/constants.json")
    func constantsMatchContract() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../protocol/constants.json")
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        let served = MethodRegistry.standard(testMethods: false).names
        #expect(json["methods"] as? [String] == served)
        #expect(json["testMethods"] as? [String] == Array(MethodRegistry.standard(testMethods: true).names.dropFirst(served.count)))
        #expect(json["maxSleepMs"] as? Int == TestSleep.maxMilliseconds)
        let shm = try #require(json["shm"] as? [String: Any])
        #expect(shm["prefixMaxChars"] as? Int == SharedMemory.maxPrefixLength)
        #expect(shm["nameMaxBytes"] as? Int == SharedMemory.maxNameBytes)
        #expect(shm["nameCharacters"] as? String == "A-Za-z0-9_.-")
        let nameBytes = (0...255).map(UInt8.init).filter(SharedMemory.isNameByte)
        #expect(nameBytes == Array("-.0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz".utf8))
        #expect(shm["maxPid"] as? Int == Int(Int32.max) && shm["maxFd"] as? Int == Int(Int32.max))
        #expect((shm["maxCount"] as? NSNumber)?.uint64Value == UInt64(UInt32.max))
    }
}
