import SquaresProtocol

/// What a frame is owed once read: its requests decoded, their effects applied, and the reply
/// still to compute (`respond`).
public struct PendingReply: Sendable {
    /// Computes the reply; nil when the frame gets none (notifications only). Absent when there is
    /// nothing to compute at all.
    let respond: (@Sendable () async -> OutboundFrame?)?
    /// Every request is under `MethodContext.inlineWorkLimit`: the thread that read the frame may
    /// compute the reply itself (its requests are not registered for a later frame's `$/cancel`).
    let isSmall: Bool
    /// Set when the server reads nothing after this frame: `shutdown`, or the input cut inside it.
    let stopsReading: ServerExitStatus?

    init(respond: (@Sendable () async -> OutboundFrame?)?, isSmall: Bool = true, stopsReading: ServerExitStatus? = nil) {
        (self.respond, self.isSmall, self.stopsReading) = (respond, isSmall, stopsReading)
    }

    init(reply: OutboundFrame) { self.init(respond: { reply }) }
}

extension Server {
    /// Reads one frame, the same wherever it runs: parse (big integer arrays in parallel); for each
    /// entry in order, decode its params and apply its effect (`$/cancel`, `shutdown`,
    /// `initialize`'s prefix); in a big frame, register each request for cancellation. A `$/cancel`
    /// thus always sees the requests read before it.
    public func prepare(_ event: FrameEvent) async -> PendingReply {
        if let pending = prepareInPlace(event) { return pending }
        guard case .frame(let bytes) = event else { preconditionFailure("only a big frame is read in parallel") }
        do {
            // The pieces go to the concurrency pool even when the caller is the reader's task, whose
            // thread would run them one after another.
            let root = try await withTaskExecutorPreference(globalConcurrentExecutor) { [reader, configuration] () async throws(JSONParseError) -> JSONValue in
                try await reader.parse(bytes, parallelism: configuration.parallelism)
            }
            return prepare(FrameContent(root))
        } catch {
            return parseError(error)
        }
    }

    /// `prepare(_:)` with no suspension, for every event but a frame big enough to be parsed in
    /// parallel pieces (nil then).
    private func prepareInPlace(_ event: FrameEvent) -> PendingReply? {
        switch event {
        case .oversized(let length):
            logger.warning("refused a frame of \(length) bytes (limit \(configuration.maxFrameBytes))")
            let error = RPCError.frameTooLarge(length: length, limit: configuration.maxFrameBytes)
            return PendingReply(reply: OutboundFrame(.failure(id: .null, error: error)))
        case .truncated(let position):
            logger.error("input ended \(position)")
            return PendingReply(respond: nil, stopsReading: .truncatedInput)
        case .frame(let bytes):
            guard bytes.count < reader.parallelSpanBytes || configuration.parallelism == 1 else { return nil }
            do {
                return prepare(FrameContent(try reader.parse(bytes)))
            } catch {
                return parseError(error)
            }
        }
    }

    private func parseError(_ error: JSONParseError) -> PendingReply {
        logger.debug("parse error: \(error)")
        return PendingReply(reply: OutboundFrame(.failure(id: .null, error: RPCError(.parseError, message: "Parse error: \(error.description)"))))
    }

    /// One entry of a frame, on its way to a response.
    private enum Part: Sendable {
        case response(Response)
        /// A call to compute; `id` nil for a notification that has side effects (no response).
        case call(id: JSONValue?, Call, CancellationSignal?)
    }

    private func prepare(_ content: FrameContent) -> PendingReply {
        let (entries, isBatch): ([Entry], Bool) = switch content {
        case .single(let entry): ([entry], false)
        case .batch(let entries): (entries, true)
        }
        var parts: [Part] = []
        var stopsReading: ServerExitStatus? = nil
        for entry in entries {
            let request: Request
            switch entry {
            case .invalid(let id, let error):
                parts.append(.response(.failure(id: id, error: error)))
                continue
            case .request(let valid):
                request = valid
            }
            guard let method = methods[request.method] else {
                if let id = request.id { parts.append(.response(.failure(id: id, error: .methodNotFound(request.method)))) }
                continue
            }
            switch method.call(request.params, context) {
            case .failure(let error):
                if let id = request.id { parts.append(.response(.failure(id: id, error: error))) }
            case .success(let call):
                switch call.effect {
                case .none: break
                case .shutdown: stopsReading = .success
                case .cancel(let target): cancellations.cancel(target)
                case .armSharedMemory(let prefix): context.shmPrefix.arm(prefix)
                }
                if case .cancel(let target) = call.effect { cancelEarlierEntries(&parts, target) }
                // A notification has its effect and nothing else, unless it has side effects.
                guard request.id != nil || call.hasSideEffects else { continue }
                parts.append(.call(id: request.id, call, nil))
            }
        }
        let isSmall = parts.allSatisfy { part in
            if case .call(_, let call, _) = part { call.workSize < MethodContext.inlineWorkLimit } else { true }
        }
        if !isSmall {
            // Registered before the next frame is read, so that a `$/cancel` in a later frame finds
            // them (one in this frame was applied above); a small frame's calls run for well under
            // a millisecond and are not registered.
            for (index, part) in parts.enumerated() {
                guard case .call(let id?, let call, nil) = part, call.isCancellable else { continue }
                parts[index] = .call(id: id, call, cancellations.register(id))
            }
        }
        guard !parts.isEmpty else { return PendingReply(respond: nil, stopsReading: stopsReading) }
        return PendingReply(respond: { [self, parts] in
            var responses: [Response] = []
            responses.reserveCapacity(parts.count)
            for part in parts {
                switch part {
                case .response(let response): responses.append(response)
                case .call(let id, let call, let signal):
                    if let response = await respond(to: id, call, signal) { responses.append(response) }
                }
            }
            guard !responses.isEmpty else { return nil }
            return isBatch ? OutboundFrame(batch: responses) : OutboundFrame(responses[0])
        }, isSmall: isSmall, stopsReading: stopsReading)
    }

    /// A `$/cancel` of `target` cancels the requests with that id read before it in the same frame:
    /// they answer -32800 without running.
    private func cancelEarlierEntries(_ parts: inout [Part], _ target: JSONValue) {
        guard let key = CancellationRegistry.key(target) else { return }
        for (index, part) in parts.enumerated() {
            guard case .call(let id?, let call, _) = part, call.isCancellable, CancellationRegistry.key(id) == key else { continue }
            parts[index] = .response(.failure(id: id, error: RPCError(.requestCancelled)))
        }
    }

    /// Computes one call (until its `signal` fires, if it has one) and unregisters it; nil for a
    /// notification.
    private func respond(to id: JSONValue?, _ call: Call, _ signal: CancellationSignal?) async -> Response? {
        let result: Result<ResultBody, RPCError>
        do {
            if let signal {
                defer { if let id { cancellations.unregister(id, signal) } }
                if signal.isFired { throw CancellationError() }
                result = .success(try await withCancellation(by: signal, call.compute))
            } else {
                result = .success(try await call.compute())
            }
        } catch let error as RPCError {
            result = .failure(error)
        } catch is CancellationError {
            logger.debug("request \(id ?? .null) cancelled")
            result = .failure(RPCError(.requestCancelled))
        } catch {
            logger.error("request \(id ?? .null) failed: \(error)")
            result = .failure(RPCError(.internalError, message: "Internal error: \(error)"))
        }
        guard let id else {
            if case .failure(let error) = result { logger.debug("a notification failed: \(error)") }
            return nil
        }
        return switch result {
        case .success(let body): .success(id: id, result: body)
        case .failure(let error): .failure(id: id, error: error)
        }
    }
}

extension RPCError {
    static func methodNotFound(_ method: String) -> RPCError {
        RPCError(.methodNotFound, message: "Method not found: \(method)", data: .object(["method": .string(method)]))
    }
}
