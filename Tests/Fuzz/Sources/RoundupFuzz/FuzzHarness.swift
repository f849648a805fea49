import Foundation

@testable import Roundup

/// The decoder under test is chosen by ROUNDUP_FUZZ (im, imjson, wechat, csv, config). Each input
/// goes through the same properties as the generative tests (HostileOracles.swift, shared with
/// Tests/RoundupTests/Hostile); a broken property traps, so libFuzzer keeps the input as a crash file.
enum FuzzHarness {
    /// The decoders this harness fuzzes.
    enum Target: String, CaseIterable {
        case im, imjson, wechat, csv, config
    }

    static let target: Target = {
        let name = ProcessInfo.processInfo.environment["ROUNDUP_FUZZ"] ?? "im"
        guard let target = Target(rawValue: name) else {
            let names = Target.allCases.map(\.rawValue).joined(separator: ", ")
            fatalError("ROUNDUP_FUZZ must be one of \(names) (got \(name))")
        }
        return target
    }()

    /// A plaintext-mode verifier and a correctly signed query, so every body reaches the parser.
    static let verifier = WeChatPushVerifier(token: "AAAAA", crypto: nil)
    static let query = PushQuery(
        signature: PushSignature.compute(token: "AAAAA", timestamp: "1714037059", nonce: "486452656"),
        timestamp: "1714037059", nonce: "486452656")

    /// Refuses an unknown ROUNDUP_FUZZ before libFuzzer starts, and says which decoder runs.
    static func checkTarget() {
        FileHandle.standardError.write(Data("RoundupFuzz: fuzzing \(target.rawValue)\n".utf8))
    }

    static func testOneInput(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
        let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: count)) } ?? []
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
}

/// The callback libFuzzer's own `main` calls. That `main` never runs (SwiftPM's alias wins), but
/// the linker keeps its object from the fuzzer runtime, so the symbol must exist to link.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    FuzzHarness.testOneInput(data, count)
}
