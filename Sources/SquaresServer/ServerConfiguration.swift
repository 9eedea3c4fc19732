import CSquaresSystem
import SquaresProtocol

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What the worker was started with.
public struct ServerConfiguration: Sendable {
    /// Child tasks that share one big request's decoding, squaring and encoding.
    public var parallelism: Int
    /// Frames being processed at once; at the bound the server stops reading.
    public var maxInFlight: Int
    /// Frames longer than this are refused and skipped.
    public var maxFrameBytes: Int
    /// Serve `test/sleep`, which the conformance suite uses to make timing deterministic.
    public var testMethods: Bool
    /// Serve the shared-memory plane (`numbersShm`, "shm" in `initialize`'s encodings); false
    /// answers `numbersShm` as a 1.1 worker would.
    public var sharedMemory: Bool

    /// Whether this system lets the worker serve the shared-memory plane: Linux with procfs
    /// (`/proc/self/fd` readable), looked at once.
    public static var sharedMemoryAvailable: Bool { SharedMemory.isServed }

    /// The cores this process may run on: its CPU affinity mask on Linux (as `taskset` or a
    /// container's cpuset leave it), else the online processors.
    public static var activeProcessorCount: Int {
        let inMask = Int(csquares_affinity_cpu_count())
        return inMask > 0 ? inMask : max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
    }

    public init(
        parallelism: Int,
        maxInFlight: Int = ProtocolConstants.defaultMaxInFlight,
        maxFrameBytes: Int = ProtocolConstants.defaultMaxFrameBytes,
        testMethods: Bool = false,
        sharedMemory: Bool = ServerConfiguration.sharedMemoryAvailable
    ) {
        self.parallelism = parallelism
        self.maxInFlight = maxInFlight
        self.maxFrameBytes = maxFrameBytes
        self.testMethods = testMethods
        self.sharedMemory = sharedMemory
    }
}

/// Where replies go. `write` returns once the frame is written (or can never be), so a request
/// holds its in-flight slot until its reply has left.
public protocol ReplyWriter: Sendable {
    func write(_ frame: OutboundFrame) async
}

/// How the serving loop ended.
public enum ServerExitStatus: Int32, Sendable {
    /// End of input at a frame boundary, `shutdown`, or a stop signal.
    case success = 0
    /// End of input inside a frame.
    case truncatedInput = 1
}
