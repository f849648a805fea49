import Foundation

/// The callback commands Roundup handles; anything else is answered OK and counted as `other`.
public enum IMCallbackCommand: String, Sendable, CaseIterable {
    case stateChange = "State.StateChange"
    case c2cBeforeSend = "C2C.CallbackBeforeSendMsg"
    case c2cAfterSend = "C2C.CallbackAfterSendMsg"
    case msgReport = "C2C.CallbackAfterMsgReport"
    case withdraw = "C2C.CallbackAfterMsgWithDraw"
    case groupAfterSend = "Group.CallbackAfterSendMsg"
}

/// Why a callback body was refused; the HTTP layer answers 400 with the description.
public enum IMCallbackDecodingError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The body is not JSON at all.
    case invalidJSON
    /// The body is JSON, but not an object.
    case notAnObject
    /// A field the command cannot do without is absent, empty or unusable.
    case missingField(command: String, field: String)

    public var description: String {
        switch self {
        case .invalidJSON: return "the callback body is not valid JSON"
        case .notAnObject: return "the callback body is not a JSON object"
        case .missingField(let command, let field): return "the \(command) callback body has no usable \(field)"
        }
    }
}

/// One decoded IM callback, ready for presence, ingest, read and recall handling.
public enum IMCallback: Sendable, Equatable {
    case stateChange(IMStateChange)
    case c2cBeforeSend(IMC2CMessage)
    case c2cAfterSend(IMC2CMessage)
    case msgReport(IMReadReport)
    case withdraw(IMWithdrawal)
    case groupAfterSend(IMGroupMessage)
    /// A command Roundup does not handle; answered OK and counted.
    case unknown(command: String)

    /// Decodes a callback body in one pass. `command` is the query's `CallbackCommand`; the body's
    /// own `CallbackCommand` wins when present. Odd types (quoted numbers, unknown `MsgType`s,
    /// unknown actions) are tolerated; only a non-object body or a missing essential field fails.
    public static func decode(command: String?, body: Data) throws(IMCallbackDecodingError) -> IMCallback {
        let json: IMJSON
        do {
            json = try IMJSON.parse(body)
        } catch {
            throw .invalidJSON
        }
        guard case .object(let object) = json else { throw .notAnObject }
        var resolved = object["CallbackCommand"]?.string ?? ""
        if resolved.isEmpty { resolved = command ?? "" }
        return try build(command: resolved, body: object)
    }

    /// The command this callback came as: a handled command's name, or the unknown one verbatim.
    public var command: String {
        switch self {
        case .stateChange: return IMCallbackCommand.stateChange.rawValue
        case .c2cBeforeSend: return IMCallbackCommand.c2cBeforeSend.rawValue
        case .c2cAfterSend: return IMCallbackCommand.c2cAfterSend.rawValue
        case .msgReport: return IMCallbackCommand.msgReport.rawValue
        case .withdraw: return IMCallbackCommand.withdraw.rawValue
        case .groupAfterSend: return IMCallbackCommand.groupAfterSend.rawValue
        case .unknown(let command): return command
        }
    }
}

extension IMCallback {
    /// The callback for a command, or the first essential field it lacks.
    private static func build(command: String, body: IMJSONObject) throws(IMCallbackDecodingError) -> IMCallback {
        /// A non-empty string field, or the error naming it.
        func required(_ field: String, in object: IMJSONObject? = nil, as name: String? = nil) throws(IMCallbackDecodingError) -> String {
            guard let value = (object ?? body)[field]?.string, !value.isEmpty else {
                throw .missingField(command: command, field: name ?? field)
            }
            return value
        }
        switch IMCallbackCommand(rawValue: command) {
        case .stateChange:
            guard let info = body["Info"]?.object else { throw .missingField(command: command, field: "Info") }
            return .stateChange(IMStateChange(
                userID: try required("To_Account", in: info, as: "Info.To_Account"),
                action: IMStateAction(info["Action"]?.string ?? ""), reason: info["Reason"]?.string,
                eventTime: body["EventTime"]?.int64 ?? 0))
        case .c2cBeforeSend, .c2cAfterSend:
            let afterSend = command == IMCallbackCommand.c2cAfterSend.rawValue
            let eventTime = body["EventTime"]?.int64
            let message = IMC2CMessage(
                from: try required("From_Account"), to: try required("To_Account"),
                msgSeq: body["MsgSeq"]?.int64, msgRandom: body["MsgRandom"]?.int64,
                msgTime: body["MsgTime"]?.int64 ?? eventTime.map { $0 / 1000 } ?? 0,
                msgKey: try required("MsgKey"), msgID: body["MsgId"]?.string,
                onlineOnly: body["OnlineOnlyFlag"]?.flag ?? false,
                sendMsgResult: afterSend ? body["SendMsgResult"]?.int64 ?? 0 : nil,
                elements: elements(body["MsgBody"]),
                cloudCustomData: body["CloudCustomData"]?.string, eventTime: eventTime)
            return afterSend ? .c2cAfterSend(message) : .c2cBeforeSend(message)
        case .msgReport:
            let report = try required("Report_Account")
            let peer = try required("Peer_Account")
            guard let lastRead = body["LastReadTime"]?.int64 else {
                throw .missingField(command: command, field: "LastReadTime")
            }
            return .msgReport(IMReadReport(
                reportAccount: report, peerAccount: peer, lastReadTime: lastRead, eventTime: body["EventTime"]?.int64))
        case .withdraw:
            return .withdraw(IMWithdrawal(
                from: body["From_Account"]?.string ?? "", to: try required("To_Account"), msgKey: try required("MsgKey")))
        case .groupAfterSend:
            let groupID = try required("GroupId")
            let from = try required("From_Account")
            guard let msgSeq = body["MsgSeq"]?.int64 else { throw .missingField(command: command, field: "MsgSeq") }
            let eventTime = body["EventTime"]?.int64
            var atAll = false
            var mentioned: [String] = []
            for entry in body["GroupAtInfo"]?.array ?? [] {
                guard let entry = entry.object else { continue }
                if entry["GroupAtAllFlag"]?.flag == true {
                    atAll = true
                } else if let account = entry["GroupAt_Account"]?.string, !account.isEmpty, !mentioned.contains(account) {
                    mentioned.append(account)
                }
            }
            return .groupAfterSend(IMGroupMessage(
                groupID: groupID, groupType: body["Type"]?.string ?? "", from: from,
                operatorAccount: body["Operator_Account"]?.string, random: body["Random"]?.int64, msgSeq: msgSeq,
                msgTime: body["MsgTime"]?.int64 ?? eventTime.map { $0 / 1000 } ?? 0,
                onlineOnly: body["OnlineOnlyFlag"]?.flag ?? false, elements: elements(body["MsgBody"]),
                cloudCustomData: body["CloudCustomData"]?.string, eventTime: eventTime,
                atAll: atAll, mentioned: mentioned, topicID: body["TopicId"]?.string))
        case nil:
            return .unknown(command: command)
        }
    }

    /// The `MsgBody` elements; a body that is not an array has none, an unusable element is `.unknown`.
    private static func elements(_ msgBody: IMJSON?) -> [IMMessageElement] {
        guard let items = msgBody?.array else { return [] }
        return items.map { item in
            guard let object = item.object else { return .unknown(type: "") }
            let type = object["MsgType"]?.string ?? ""
            let content = object["MsgContent"]?.object
            switch type {
            case "TIMTextElem": return .text(content?["Text"]?.string ?? "")
            case "TIMImageElem": return .image
            case "TIMSoundElem": return .sound
            case "TIMVideoFileElem": return .video
            case "TIMFileElem": return .file(name: content?["FileName"]?.string)
            case "TIMLocationElem": return .location(desc: content?["Desc"]?.string)
            case "TIMFaceElem": return .face
            case "TIMCustomElem": return .custom(desc: content?["Desc"]?.string)
            case "TIMRelayElem": return .relay(title: content?["Title"]?.string)
            default: return .unknown(type: type)
            }
        }
    }
}
