import SquaresCore
@testable import SquaresProtocol

/// The packed encoding's invariants.
enum PackedChecks {
    /// `PackedCodec.decodeNumbers` agrees with the base64 model (little-endian `UInt32`s) wherever
    /// the model is definite, and the squares it encodes decode back to the exact squares.
    static func check(_ text: String, parts: Int) async {
        let model = Base64Model.decode(text.utf8)
        let decoded: OwnedBuffer<UInt32>
        do {
            decoded = try await PackedCodec.decodeNumbers(text, parallelism: parts)
        } catch {
            if let model, model.canonical {
                require(model.bytes.count % 4 != 0, "PackedCodec refused canonical base64 of \(model.bytes.count) bytes (\(error.detail)): \(show(text.utf8))")
            }
            return
        }
        guard let model else { return require(false, "PackedCodec accepted what is not padded base64: \(show(text.utf8))") }
        let bytes = decoded.array.flatMap { value in withUnsafeBytes(of: value.littleEndian) { Array($0) } }
        require(bytes == model.bytes, "PackedCodec decoded \(show(bytes)), the model \(show(model.bytes)): \(show(text.utf8))")
        guard let squares = try? await PackedCodec.encode(OwnedBuffer(decoded.array.map(square)), parallelism: parts) else {
            return require(false, "encoding packed squares failed without cancellation")
        }
        let expected = decoded.array.flatMap { value in withUnsafeBytes(of: square(value).littleEndian) { Array($0) } }
        require(squares.joined().elementsEqual(Base64Model.encode(expected)), "packed squares are not the base64 of the exact squares")
    }
}
