import Foundation

/// The programmable state of `FakeWeChatServer`: its tokens, what it should answer next, and a
/// record of everything it accepted. The demo, the benchmark and the tests drive it.
public actor FakeWeChatScript {
    /// One scripted answer to the next `subscribe/send`, consumed in order.
    public enum Step: Sendable, Equatable {
        /// Answer `{"errcode":code,"errmsg":…}` without sending (e.g. 40001 once, -1, 43101, 45009, 47003).
        case errcode(Int64, String? = nil)
        /// Wait this long, then handle the request normally (to outlast a client's deadline).
        case delay(Duration)
        /// Answer this HTTP status with a short body (e.g. 500).
        case httpStatus(Int)
        /// Close the connection after reading the request, answering nothing.
        case closeConnection
    }

    /// One send the fake accepted, exactly as received.
    public struct AcceptedSend: Sendable, Equatable {
        /// The raw JSON body.
        public var body: String
        public var touser: String
        public var templateID: String
        /// The msgid answered (above 2^53, to catch Double parsing).
        public var msgid: String
        /// When the fake accepted it.
        public var at: Date = Date()
    }

    let appID: String
    let secret: String
    private var steps: [Step] = []
    private var tokenErrors: [Int64] = []
    private var tokenGeneration = 0
    private var validTokens: Set<String> = []
    private var nextMsgID: Int64 = 3_248_682_510_344_192_008
    private var inFlight: Set<String> = []

    /// The `expires_in` answered with each token.
    public var tokenExpiresIn: Int64
    /// Added to every send before it is answered (makes per-openid overlaps observable).
    public var sendLatency: Duration = .zero
    /// Added to every token request before it is answered (makes concurrent refreshes observable).
    public var tokenLatency: Duration = .zero
    /// When set, only these template ids are accepted (others get 40037).
    public var templateIDs: Set<String>?
    /// Sends to these openids wait this long before they are handled (a WeChat call that hangs).
    public private(set) var holds: [String: Duration] = [:]

    /// While closed, every send waits at the gate before it is handled (a test decides when WeChat answers).
    public private(set) var gateClosed = false
    private var atGate: [CheckedContinuation<Void, Never>] = []

    /// Requests to `/cgi-bin/stable_token`, successful or not.
    public private(set) var tokenFetches = 0
    /// Requests to `/cgi-bin/message/subscribe/send`, whatever the answer.
    public private(set) var sendAttempts = 0
    /// Sends that arrived while another send to the same openid was in flight (answered 43108).
    public private(set) var overlaps = 0
    /// Every send answered with errcode 0, in order.
    public private(set) var accepted: [AcceptedSend] = []
    /// The token `stable_token` hands out now.
    public private(set) var currentToken: String

    init(appID: String, secret: String, tokenExpiresIn: Int64) {
        self.appID = appID
        self.secret = secret
        self.tokenExpiresIn = tokenExpiresIn
        self.currentToken = Self.tokenValue(generation: 0)
        self.validTokens = [currentToken]
    }

    private static func tokenValue(generation: Int) -> String { "FAKE_ACCESS_TOKEN_\(generation)_\(UUID().uuidString)" }

    // MARK: Programming

    /// Queues answers for the next sends, in order.
    public func enqueue(_ newSteps: Step...) { steps.append(contentsOf: newSteps) }

    /// Queues errcodes for the next token requests, in order.
    public func failTokenRequests(_ errcodes: Int64...) { tokenErrors.append(contentsOf: errcodes) }

    public func setSendLatency(_ latency: Duration) { sendLatency = latency }
    /// Sends wait from now on until `openGate`.
    public func closeGate() { gateClosed = true }
    /// Lets the waiting sends and every later one through.
    public func openGate() {
        gateClosed = false
        let waiting = atGate
        atGate = []
        for w in waiting { w.resume() }
    }

    func passGate() async {
        guard gateClosed else { return }
        await withCheckedContinuation { atGate.append($0) }
    }
    public func setTokenLatency(_ latency: Duration) { tokenLatency = latency }
    public func setTokenExpiresIn(_ seconds: Int64) { tokenExpiresIn = seconds }
    public func setTemplateIDs(_ ids: Set<String>?) { templateIDs = ids }
    /// Makes every send to `openid` hang for `duration` before it is handled.
    public func hold(sendsTo openid: String, for duration: Duration) { holds[openid] = duration }

    /// Issues a new token, as WeChat does 5 minutes before expiry; the old one keeps working
    /// unless `invalidatingPrevious` (as after `force_refresh`).
    @discardableResult
    public func rotateToken(invalidatingPrevious: Bool = false) -> String {
        tokenGeneration += 1
        if invalidatingPrevious { validTokens.removeAll() }
        currentToken = Self.tokenValue(generation: tokenGeneration)
        validTokens.insert(currentToken)
        return currentToken
    }

    /// Sends still scripted.
    public var pendingSteps: [Step] { steps }

    // MARK: Serving

    /// The answer to a token request (after any scripted error).
    func tokenRequest(grantType: String?, appID: String?, secret: String?, forceRefresh: Bool) -> (Int64, String, String?) {
        tokenFetches += 1
        if !tokenErrors.isEmpty { return (tokenErrors.removeFirst(), "scripted error", nil) }
        guard grantType == "client_credential" else { return (40002, "invalid grant_type", nil) }
        guard appID == self.appID else { return (40013, "invalid appid", nil) }
        guard secret == self.secret else { return (40125, "invalid appsecret", nil) }
        if forceRefresh { rotateToken(invalidatingPrevious: true) }
        return (0, "ok", currentToken)
    }

    func countSendAttempt() { sendAttempts += 1 }

    /// Marks a send to `openid` as in flight; false (and an overlap counted) if one already is.
    func beginSend(_ openid: String) -> Bool {
        guard inFlight.insert(openid).inserted else {
            overlaps += 1
            return false
        }
        return true
    }

    func endSend(_ openid: String) { inFlight.remove(openid) }

    func nextStep() -> Step? { steps.isEmpty ? nil : steps.removeFirst() }

    func isValid(token: String) -> Bool { validTokens.contains(token) }

    func accept(body: String, touser: String, templateID: String) -> String {
        let msgid = String(nextMsgID)
        nextMsgID += 1
        accepted.append(AcceptedSend(body: body, touser: touser, templateID: templateID, msgid: msgid))
        return msgid
    }
}
