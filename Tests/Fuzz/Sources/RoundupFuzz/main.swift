import CFuzzerSupport
import Foundation

// SwiftPM links an executable's top-level code as `main` (through a `RoundupFuzz_main` alias), so
// libFuzzer's own `main` never runs; this code hands control to libFuzzer's driver instead, which
// reads libFuzzer's flags (-runs=, -max_total_time=, corpus folders, a crash file to replay…) and
// calls `FuzzHarness.testOneInput` for every input.

// Swift's backtracer would catch a crash first and can sit for minutes symbolicating the
// sanitized binary; libFuzzer's handler prints the stack and saves the input. Turn it off: the
// runtime reads SWIFT_BACKTRACE at start-up, so run this program again with it set.
if ProcessInfo.processInfo.environment["SWIFT_BACKTRACE"] == nil {
    setenv("SWIFT_BACKTRACE", "enable=no", 1)
    execv("/proc/self/exe", CommandLine.unsafeArgv)
    // Only reached when the exec failed: fuzz on with the backtracer.
}

FuzzHarness.checkTarget()
var argc = CommandLine.argc
var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&argc, &argv) { data, count in FuzzHarness.testOneInput(data, count) })
