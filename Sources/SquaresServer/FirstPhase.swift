import SquaresProtocol

/// What a frame's first phase left to do.
public struct FramePlan: Sendable {
    @_spi(Fuzz) public enum Work: Sendable {
        /// Notifications only: nothing to send.
        case nothing
        /// Answered at once: the reply to write.
        case reply(OutboundFrame)
        /// Work for a child task; it returns the reply to write, if any.
        case job(@Sendable () async -> OutboundFrame?)
    }

    @_spi(Fuzz) public var work: Work
    /// The frame asked the worker to stop reading (a `shutdown`).
    var shutdown: Bool
}

extension Server {
    /// The synchronous first phase of one frame, the same wherever it runs: parse; for each entry
    /// in order, decode its params, apply its effect (`$/cancel`, `shutdown`) and register it for
    /// cancellation; then either the reply, when every entry could be answered at once
    /// (`MethodContext.isImmediate`), or a job that decodes the frame's big integer arrays in
    /// parallel and runs the rest.
    @_spi(Fuzz) public func firstPhase(_ event: FrameEvent) -> FramePlan {
        let bytes: FrameBytes
        switch event {
        case .oversized(let length):
            logger.warning("refused a frame of \(length) bytes (limit \(configuration.maxFrameBytes))")
            let error = RPCError.frameTooLarge(length: length, limit: configuration.maxFrameBytes)
            return FramePlan(work: .reply(OutboundFrame(.failure(id: .null, error: error))), shutdown: false)
        case .frame(let frame):
            bytes = frame
        }
        let frame: ParsedFrame
        do {
            frame = try reader.scan(bytes)
        } catch {
            return FramePlan(work: .reply(parseErrorReply(error)), shutdown: false)
        }
        let (entries, isBatch): ([Entry], Bool) = switch FrameContent(frame.root) {
        case .single(let entry): ([entry], false)
        case .batch(let entries): (entries, true)
        }
        var slots: [Slot] = []
        var shutdown = false
        var hasJobs = false
        for entry in entries {
            let request: Request
            switch entry {
            case .invalid(let id, let error):
                slots.append(.answered(.failure(id: id, error: error)))
                continue
            case .request(let valid):
                request = valid
            }
            guard let method = methods[request.method] else {
                if let id = request.id { slots.append(.answered(.failure(id: id, error: .methodNotFound(request.method)))) }
                continue
            }
            let call = method.prepare(request.params, context)
            switch call.effect {
            case .none: break
            case .shutdown: shutdown = true
            case .cancel(let target): cancellations.cancel(target)
            case .armSharedMemory(let prefix): context.shmPrefix.arm(prefix)
            }
            // A notification has its effect and nothing else: no reply, and no work unless the
            // work writes elsewhere (an shm segment; not cancellable: it has no id).
            guard let id = request.id else {
                if case .job(let job) = call.outcome, call.writesOutsideReply {
                    slots.append(.unanswered(job))
                    hasJobs = true
                }
                continue
            }
            switch call.outcome {
            case .answered(.success(let body)):
                slots.append(.answered(.success(id: id, result: body)))
            case .answered(.failure(let error)):
                slots.append(.answered(.failure(id: id, error: error)))
            case .job(let job):
                // Registered here, in stream order: a `$/cancel` later in this batch or in a later
                // frame finds it; one earlier does not.
                let signal = call.isCancellable ? cancellations.register(id) : CancellationSignal()
                slots.append(.job(id: id, job, signal))
                hasJobs = true
            }
        }
        if !hasJobs && frame.pending.isEmpty {
            let work: FramePlan.Work = slots.isEmpty ? .nothing : .reply(Self.reply(slots.map(\.answered!), isBatch: isBatch))
            return FramePlan(work: work, shutdown: shutdown)
        }
        let parallelism = configuration.parallelism
        return FramePlan(work: .job({ [self, slots] in
            do throws(JSONParseError) {
                try await frame.decodePending(parts: parallelism)
            } catch {
                for case .job(let id, _, let signal) in slots { cancellations.unregister(id, signal) }
                return parseErrorReply(error)
            }
            var responses: [Response] = []
            responses.reserveCapacity(slots.count)
            for slot in slots {
                switch slot {
                case .answered(let response): responses.append(response)
                case .job(let id, let job, let signal): responses.append(await answer(id, job, signal))
                case .unanswered(let job):
                    do { _ = try await job(CancellationSignal()) } catch { logger.debug("a notification failed: \(error)") }
                }
            }
            return responses.isEmpty ? nil : Self.reply(responses, isBatch: isBatch)
        }), shutdown: shutdown)
    }

    /// One entry of a frame that gets a response.
    enum Slot: Sendable {
        case answered(Response)
        case job(id: JSONValue, @Sendable (CancellationSignal) async throws -> ResultBody, CancellationSignal)
        /// A notification's work, run for what it writes elsewhere; it gets no response.
        case unanswered(@Sendable (CancellationSignal) async throws -> ResultBody)

        var answered: Response? { if case .answered(let response) = self { response } else { nil } }
    }

    /// Runs one request's job and unregisters it.
    func answer(_ id: JSONValue, _ job: @Sendable (CancellationSignal) async throws -> ResultBody, _ signal: CancellationSignal) async -> Response {
        defer { cancellations.unregister(id, signal) }
        if signal.isFired { return .failure(id: id, error: RPCError(.requestCancelled)) }
        do {
            return .success(id: id, result: try await job(signal))
        } catch let error as RPCError {
            return .failure(id: id, error: error)
        } catch is CancellationError {
            logger.debug("request \(id) cancelled")
            return .failure(id: id, error: RPCError(.requestCancelled))
        } catch {
            logger.error("request \(id) failed: \(error)")
            return .failure(id: id, error: RPCError(.internalError, message: "Internal error: \(error)"))
        }
    }

    func parseErrorReply(_ error: JSONParseError) -> OutboundFrame {
        logger.debug("parse error: \(error)")
        return OutboundFrame(.failure(id: .null, error: RPCError(.parseError, message: "Parse error: \(error.description)")))
    }

    static func reply(_ responses: [Response], isBatch: Bool) -> OutboundFrame {
        isBatch ? OutboundFrame(batch: responses) : OutboundFrame(responses[0])
    }
}

extension RPCError {
    static func methodNotFound(_ method: String) -> RPCError {
        RPCError(.methodNotFound, message: "Method not found: \(method)", data: .object(["method": .string(method)]))
    }
}
