import Foundation

@testable import Roundup

// libFuzzer calls `LLVMFuzzerTestOneInput` for every input it generates; the decoder under test is
// chosen by ROUNDUP_FUZZ (im, imjson, wechat, csv, config). Each input goes through the same
// properties as the generative tests (HostileOracles.swift, shared with Tests/RoundupTests/Hostile);
// a broken property traps, so libFuzzer keeps the input as a crash file.

/// The decoder this run fuzzes.
private enum FuzzTarget: String {
    case im, imjson, wechat, csv, config
}

private let target: FuzzTarget = {
    let name = ProcessInfo.processInfo.environment["ROUNDUP_FUZZ"] ?? "im"
    guard let target = FuzzTarget(rawValue: name) else {
        fatalError("ROUNDUP_FUZZ must be one of im, imjson, wechat, csv, config (got \(name))")
    }
    return target
}()

/// A plaintext-mode verifier and a correctly signed query, so every body reaches the parser.
private let verifier = WeChatPushVerifier(token: "AAAAA", crypto: nil)
private let query = PushQuery(
    signature: PushSignature.compute(token: "AAAAA", timestamp: "1714037059", nonce: "486452656"),
    timestamp: "1714037059", nonce: "486452656")

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let bytes = Array(UnsafeRawBufferPointer(start: start, count: count))
    let problems: [String]
    switch target {
    case .im: problems = HostileOracles.imCallback(bytes)
    case .imjson: problems = HostileOracles.imJSON(bytes)
    case .wechat: problems = HostileOracles.plaintextPush(bytes, verifier: verifier, query: query)
    case .csv: problems = HostileOracles.rosterRows(String(decoding: bytes, as: UTF8.self), knownProfiles: ["clinic"])
    case .config: problems = HostileOracles.config(String(decoding: bytes, as: UTF8.self))
    }
    if !problems.isEmpty { fatalError("property broken: " + problems.joined(separator: "; ")) }
    return 0
}
