/// The contract's fixed names and numbers, defined once for the Swift side. The tests check them
/// against `protocol/constants.json`.
public enum ProtocolConstants {
    public static let protocolVersion = "1.2"
    /// The encodings `calculate_squares` accepts, as `initialize` advertises them ("shm" only
    /// where the worker serves the shared-memory plane).
    public static let encodings = ["json", "packed", "shm"]
    public static let workerName = "squares-worker"
    public static let workerVersion = "0.1.0"

    public static let defaultMaxFrameBytes = 64 * 1024 * 1024
    public static let defaultMaxInFlight = 64
    /// The largest accepted element: `UInt32.max`.
    public static let maxNumber = UInt64(UInt32.max)
    /// Arrays and objects nested deeper than this are refused as a parse error.
    public static let maxNestingDepth = 256
}

/// JSON-RPC 2.0 error codes, plus LSP's request-cancelled code and one server-defined code.
public enum ErrorCode: Int, Sendable, CaseIterable {
    case parseError = -32700
    case invalidRequest = -32600
    case methodNotFound = -32601
    case invalidParams = -32602
    case internalError = -32603
    case requestCancelled = -32800
    case frameTooLarge = -32000

    var defaultMessage: String {
        switch self {
        case .parseError: "Parse error"
        case .invalidRequest: "Invalid Request"
        case .methodNotFound: "Method not found"
        case .invalidParams: "Invalid params"
        case .internalError: "Internal error"
        case .requestCancelled: "Request cancelled"
        case .frameTooLarge: "Frame too large"
        }
    }
}

/// Why a method refused its params; sent as `data.reason`. (The method names live with each
/// method: SquaresServer's `MethodRegistry`.)
public enum ParamsErrorReason: String, Sendable, CaseIterable {
    /// An element is not a JSON integer (`1.5`, `2.0`, `1e3`, `"1"`, `true`, `null`, `[1]`, `{}`).
    case notAnInteger = "not_an_integer"
    /// An element is an integer below zero.
    case negative = "negative"
    /// An element is an integer above `ProtocolConstants.maxNumber`.
    case tooLarge = "too_large"
    /// `numbers` is present but not an array.
    case notAnArray = "not_an_array"
    /// Anything else about the params' shape: `numbers` missing, wrong positional arity.
    case invalidShape = "invalid_shape"
    /// `numbersPacked` is not padded base64 of a whole number of little-endian `UInt32`s.
    case invalidPacked = "invalid_packed"
    /// `numbersShm` or `shmPrefix` refused: malformed, no prefix armed, or not a segment the
    /// client made for this worker (nothing is opened then).
    case invalidShm = "invalid_shm"
}
