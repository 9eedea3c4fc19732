import CSquaresSystem
import SquaresCore
import SquaresProtocol

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The shared-memory plane of protocol 1.2 (protocol/SPEC.md): a client's anonymous memory file
/// (memfd), reached through procfs as `/proc/<pid>/fd/<fd>`, holds `count` little-endian `UInt32`s
/// at offset 0; the worker writes the results, little-endian `UInt64`s, at `resultOffset`. The
/// worker opens a segment only after the checks below, maps it for one request and keeps nothing.
enum SharedMemory {
    /// Whether this worker serves the plane: Linux on a little-endian CPU (the segment is read in
    /// place), with `/proc/self/fd` readable. Looked at once, at start.
    static let isServed: Bool = {
        #if os(Linux) && _endian(little)
        guard let directory = opendir("/proc/self/fd") else { return false }
        closedir(directory)
        return true
        #else
        return false
        #endif
    }()

    /// The longest `shmPrefix` taken, in characters (all ASCII).
    static let maxPrefixLength = 200
    /// The longest memfd name, in bytes (Linux's limit for memfd_create).
    static let maxNameBytes = 249

    /// `[A-Za-z0-9_.-]`: the characters of a prefix and of a segment's name.
    static func isNameByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "-"):
            true
        default:
            false
        }
    }

    /// 1 to `maxLength` bytes, each of `[A-Za-z0-9_.-]`.
    static func isValidName(_ text: String, maxLength: Int) -> Bool {
        let bytes = text.utf8
        return !bytes.isEmpty && bytes.count <= maxLength && bytes.allSatisfy(isNameByte)
    }

    static func invalid(_ detail: String) -> RPCError {
        RPCError.invalidParams(.invalidShm, detail: detail)
    }
}

/// `initialize`'s `shmPrefix`: the prefix of every segment name the worker will open. Until one
/// is armed, every `numbersShm` is refused. Shared by the reader thread and the serving loop.
final class ShmPrefix: Sendable {
    private let value = Locked<String?>(nil)

    var armed: String? { value.withLock { $0 } }

    func arm(_ prefix: String) { value.withLock { $0 = prefix } }
}

/// `numbersShm`'s reference to a segment, its members checked for type and range.
struct SharedSegmentReference: Sendable, Equatable {
    var pid: Int32
    var fd: Int32
    var name: String
    var count: Int

    /// Where the results start: 4·count rounded up to a multiple of 8.
    var resultOffset: Int { 8 * ((count + 1) / 2) }
    /// The bytes the segment must hold, numbers and results.
    var byteCount: Int { resultOffset + 8 * count }

    /// - Throws: `invalid_shm` for anything but an object with all four members in range.
    init(_ value: JSONValue) throws(RPCError) {
        guard case .object(let object) = value else { throw SharedMemory.invalid("numbersShm is not an object") }
        func integer(_ key: String, in range: ClosedRange<Int>) throws(RPCError) -> Int {
            guard let member = object[key] else { throw SharedMemory.invalid("numbersShm.\(key) is missing") }
            guard member.isInteger, case .number(let text) = member, let number = Int(text), range.contains(number) else {
                throw SharedMemory.invalid("numbersShm.\(key) is not an integer in \(range.lowerBound)...\(range.upperBound)")
            }
            return number
        }
        pid = Int32(try integer("pid", in: 1...Int(Int32.max)))
        fd = Int32(try integer("fd", in: 0...Int(Int32.max)))
        guard let nameMember = object["name"] else { throw SharedMemory.invalid("numbersShm.name is missing") }
        guard case .string(let text) = nameMember, SharedMemory.isValidName(text, maxLength: SharedMemory.maxNameBytes) else {
            throw SharedMemory.invalid("numbersShm.name is not 1 to \(SharedMemory.maxNameBytes) bytes of [A-Za-z0-9_.-]")
        }
        name = text
        count = try integer("count", in: 0...Int(UInt32.max))
    }

    init(pid: Int32, fd: Int32, name: String, count: Int) {
        (self.pid, self.fd, self.name, self.count) = (pid, fd, name, count)
    }

    /// What readlink(2) gives for an fd of this segment: the memfd's name, deleted.
    var linkTarget: [UInt8] { Array("/memfd:\(name) (deleted)".utf8) }
}

/// A client's segment mapped for one request: its numbers, and where their results go. Unmapped
/// by `unmap()`, which the mapping's user calls on every path (a `defer`).
struct MappedSegment: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let length: Int
    let numbers: UnsafeBufferPointer<UInt32>
    let results: UnsafeMutableBufferPointer<UInt64>

    /// Checks and maps the segment `reference` names (protocol/SPEC.md, the checks in order): it
    /// must be the memfd of that name behind `/proc/<pid>/fd/<fd>` — looked at by readlink before
    /// anything is opened, and again through the opened fd — sealed F_SEAL_SHRINK, a regular file
    /// owned by this worker's user, with no group or other permission bits, and big enough. The fd is closed
    /// before this returns; nil for `count` 0 (checked, nothing mapped).
    /// - Throws: `invalid_shm` for a segment that fails a check or cannot be mapped.
    static func map(_ reference: SharedSegmentReference) throws(RPCError) -> MappedSegment? {
        let path = "/proc/\(reference.pid)/fd/\(reference.fd)"
        let expected = reference.linkTarget
        guard linkTarget(of: path) == expected else {
            throw SharedMemory.invalid("numbersShm does not name a memfd \(reference.name) of process \(reference.pid)")
        }
        // O_NONBLOCK: were the fd replaced by a FIFO or a device after the readlink, the open must
        // not block (the checks below then refuse it); a memfd is unaffected.
        let descriptor = open(path, O_RDWR | O_CLOEXEC | O_NONBLOCK)
        guard descriptor >= 0 else {
            throw SharedMemory.invalid("numbersShm: cannot open the segment (\(String(cString: strerror(errno))))")
        }
        defer { close(descriptor) }
        try checkOpened(descriptor, reference)
        guard reference.count > 0 else { return nil }
        let length = reference.byteCount
        let address = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, descriptor, 0)
        guard let address, address != UnsafeMutableRawPointer(bitPattern: -1) else {
            throw SharedMemory.invalid("numbersShm: cannot map the segment (\(String(cString: strerror(errno))))")
        }
        // Page-aligned, so both arrays are aligned; they do not overlap (4·count ≤ resultOffset).
        return MappedSegment(
            base: address, length: length,
            numbers: UnsafeBufferPointer(start: address.assumingMemoryBound(to: UInt32.self), count: reference.count),
            results: UnsafeMutableBufferPointer(
                start: (address + reference.resultOffset).assumingMemoryBound(to: UInt64.self), count: reference.count))
    }

    /// The checks of an opened segment: its seals, fstat, then the name again through
    /// `/proc/self/fd` (the client's fd number may have been reused between the first readlink and
    /// the open). F_SEAL_SHRINK is what makes the size checked here stay true while the segment is
    /// mapped: a file shrunk under the mapping would SIGBUS the worker. It is read before the
    /// size, since a seal added after a shrink would not undo it.
    static func checkOpened(_ descriptor: Int32, _ reference: SharedSegmentReference) throws(RPCError) {
        let seals = csquares_get_seals(descriptor)
        guard seals >= 0 else {
            throw SharedMemory.invalid("numbersShm: cannot read the segment's seals (\(String(cString: strerror(errno))))")
        }
        guard csquares_seal_shrink != 0, seals & csquares_seal_shrink != 0 else {
            throw SharedMemory.invalid("numbersShm: the segment is not sealed against shrinking (F_SEAL_SHRINK)")
        }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
            throw SharedMemory.invalid("numbersShm: cannot stat the segment (\(String(cString: strerror(errno))))")
        }
        guard status.st_mode & S_IFMT == S_IFREG else { throw SharedMemory.invalid("numbersShm: the segment is not a regular file") }
        guard status.st_uid == geteuid() else { throw SharedMemory.invalid("numbersShm: the segment belongs to another user") }
        guard status.st_mode & (S_IRWXG | S_IRWXO) == 0 else {
            throw SharedMemory.invalid("numbersShm: the segment's mode gives group or other access")
        }
        guard status.st_size >= reference.byteCount else {
            throw SharedMemory.invalid("numbersShm: the segment holds \(status.st_size) bytes, \(reference.byteCount) needed")
        }
        guard linkTarget(of: "/proc/self/fd/\(descriptor)") == reference.linkTarget else {
            throw SharedMemory.invalid("numbersShm: the opened fd is not the memfd \(reference.name)")
        }
    }

    /// readlink(2) of `path`; nil if it fails or the target is longer than any memfd's.
    static func linkTarget(of path: String) -> [UInt8]? {
        let capacity = 512  // "/memfd:" + 249 bytes + " (deleted)" is 266
        return [UInt8](unsafeUninitializedCapacity: capacity) { buffer, initialized in
            let length = buffer.withMemoryRebound(to: CChar.self) { readlink(path, $0.baseAddress!, capacity) }
            initialized = length > 0 && length < capacity ? length : 0
        }.nilIfEmpty
    }

    func unmap() {
        munmap(base, length)
    }
}

extension Array {
    fileprivate var nilIfEmpty: Self? { isEmpty ? nil : self }
}
