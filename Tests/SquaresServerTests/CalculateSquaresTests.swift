@testable import SquaresProtocol
import Testing
@testable import SquaresServer

@Suite("calculate_squares params and errors")
struct CalculateSquaresTests {
    let context = MethodContext(configuration: ServerConfiguration(parallelism: 2), methodNames: [])

    /// The `data` of the error that `params` (JSON text) get, decoded and computed; nil if they are
    /// accepted.
    func errorData(_ params: String) async throws -> JSONValue? {
        guard case .failure(let error) = try await answer(RegisteredMethod(CalculateSquares()), params, in: context).result else { return nil }
        #expect(error.code == .invalidParams)
        return error.data
    }

    @Test("by name, by position, and each shape error", arguments: [
        (#"{"numbers":[1,2]}"#, nil), (#"[[1,2]]"#, nil), (#"{"numbers":[],"other":1}"#, nil),
        (#"{"numbers":5}"#, "not_an_array"), (#"{"numbers":"1,2"}"#, "not_an_array"), (#"{"numbers":{}}"#, "not_an_array"),
        (#"[5]"#, "not_an_array"), (#"{}"#, "invalid_shape"), (#"[]"#, "invalid_shape"), (#"[[1],[2]]"#, "invalid_shape"),
        (#"{"number":[1]}"#, "invalid_shape"),
        (#"{"numbersPacked":"AAAAAA=="}"#, nil), (#"{"numbers":[1],"numbersPacked":""}"#, "invalid_shape"),
        (#"{"numbersPacked":5}"#, "invalid_packed"), (#"{"numbersPacked":"AQ="}"#, "invalid_packed"),
    ])
    func shapes(params: String, reason: String?) async throws {
        let data = try await errorData(params)
        #expect(data == reason.map { JSONValue.object(["reason": .string($0)]) }, "\(params)")
    }

    @Test("the first bad element is named with its reason, on the fast path or the general one", arguments: [
        ("[1,-1]", 1, "negative"), ("[4294967296]", 0, "too_large"), ("[-99999999999999999999]", 0, "negative"),
        ("[1.5]", 0, "not_an_integer"), ("[2.0]", 0, "not_an_integer"), ("[1e3]", 0, "not_an_integer"),
        ("[\"1\"]", 0, "not_an_integer"), ("[true]", 0, "not_an_integer"), ("[null]", 0, "not_an_integer"),
        ("[[1]]", 0, "not_an_integer"), ("[{}]", 0, "not_an_integer"), ("[-1, 1.5]", 0, "negative"),
        ("[0, 4294967296, 1.5]", 1, "too_large"), ("[7, -0.5]", 1, "not_an_integer"),
    ])
    func firstProblem(array: String, index: Int, reason: String) async throws {
        let data = try await errorData(#"{"numbers":"# + array + "}")
        #expect(data == .object(["index": .integer(index), "reason": .string(reason)]), "\(array)")
    }
}
