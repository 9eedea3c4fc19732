import Foundation
import Testing
@testable import SquaresProtocol

func entry(_ text: String) async throws -> Entry {
    let frame = try await parse(text)
    guard case .single(let entry) = FrameContent(frame) else { throw CancellationError() }
    return entry
}

@Suite("JSON-RPC messages")
struct MessagesTests {
    @Test("valid requests and notifications", arguments: [
        (#"{"jsonrpc":"2.0","id":1,"method":"m"}"#, false),
        (#"{"jsonrpc":"2.0","id":"x","method":"m","params":{}}"#, false),
        (#"{"jsonrpc":"2.0","id":null,"method":"m","params":[1]}"#, false),
        (#"{"jsonrpc":"2.0","method":"m","extra":true}"#, true),
    ])
    func valid(text: String, isNotification: Bool) async throws {
        guard case .request(let request) = try await entry(text) else { Issue.record("invalid: \(text)"); return }
        #expect(request.method == "m")
        #expect(request.isNotification == isNotification)
    }

    @Test("invalid requests keep a valid id and drop an invalid one", arguments: [
        (#"{"id":1,"method":"m"}"#, JSONValue.number("1")),
        (#"{"jsonrpc":"1.0","id":"a","method":"m"}"#, .string("a")),
        (#"{"jsonrpc":"2.0","id":2,"method":5}"#, .number("2")),
        (#"{"jsonrpc":"2.0","id":3,"method":"m","params":null}"#, .number("3")),
        (#"{"jsonrpc":"2.0","id":4,"method":"m","params":"x"}"#, .number("4")),
        (#"{"jsonrpc":"2.0","id":true,"method":"m"}"#, .null),
        (#"{"jsonrpc":"2.0","id":[1],"method":"m"}"#, .null),
        (#"{"jsonrpc":"2.0","id":{},"method":"m"}"#, .null),
        ("5", .null), (#""x""#, .null),
    ])
    func invalid(text: String, id: JSONValue) async throws {
        guard case .invalid(let replyID, let error) = try await entry(text) else { Issue.record("valid: \(text)"); return }
        #expect(replyID == id)
        #expect(error.code == .invalidRequest)
    }

    @Test("an empty batch is one invalid request; a batch of numbers is one error each")
    func batches() async throws {
        for text in ["[]", "[ ]"] {
            guard case .single(.invalid(_, let error)) = FrameContent(try await parse(text)) else { Issue.record("\(text) is not one invalid request"); continue }
            #expect(error.code == .invalidRequest)
        }
        guard case .batch(let entries) = FrameContent(try await parse("[1,2,3]")) else { Issue.record("not a batch"); return }
        #expect(entries.count == 3)
    }

    @Test("responses serialise byte for byte")
    func responseBytes() {
        let success = OutboundFrame(.success(id: .number("7"), result: .encoded([Array("[1,4]".utf8)])))
        #expect(String(decoding: success.segments.joined(), as: UTF8.self) == #"{"jsonrpc":"2.0","id":7,"result":[1,4]}"#)
        #expect(success.bytes.prefix(4) == [0, 0, 0, 39])
        let failure = OutboundFrame(batch: [.failure(id: .null, error: RPCError(.requestCancelled))])
        #expect(String(decoding: failure.segments.joined(), as: UTF8.self)
            == #"[{"jsonrpc":"2.0","id":null,"error":{"code":-32800,"message":"Request cancelled"}}]"#)
    }

    @Test("constants agree with protocol/constants.json")
    func constantsMatchContract() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../protocol/constants.json")
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        #expect(json["protocolVersion"] as? String == ProtocolConstants.protocolVersion)
        #expect(json["serverName"] as? String == ProtocolConstants.workerName)
        #expect(json["encodings"] as? [String] == ProtocolConstants.encodings)
        #expect(json["maxNestingDepth"] as? Int == ProtocolConstants.maxNestingDepth)
        let limits = json["limits"] as! [String: Any]
        #expect(limits["maxFrameBytes"] as? Int == ProtocolConstants.defaultMaxFrameBytes)
        #expect(limits["maxInFlight"] as? Int == ProtocolConstants.defaultMaxInFlight)
        #expect((limits["maxNumber"] as? NSNumber)?.uint64Value == ProtocolConstants.maxNumber)
        let codes = json["errorCodes"] as! [String: Int]
        let messages = json["errorMessages"] as! [String: String]
        let names: [ErrorCode: String] = [
            .parseError: "parseError", .invalidRequest: "invalidRequest", .methodNotFound: "methodNotFound",
            .invalidParams: "invalidParams", .internalError: "internalError", .requestCancelled: "requestCancelled",
            .frameTooLarge: "frameTooLarge",
        ]
        #expect(codes.count == ErrorCode.allCases.count)
        for code in ErrorCode.allCases {
            #expect(codes[names[code]!] == code.rawValue, "\(code)")
            #expect(messages[names[code]!] == code.defaultMessage, "\(code)")
        }
        #expect(json["paramErrorReasons"] as? [String] == ParamsErrorReason.allCases.map(\.rawValue))
    }
}
