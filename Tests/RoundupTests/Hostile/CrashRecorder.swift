import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Keeps the input each generative loop is working on where a fatal-signal handler can reach it,
/// so a crash (a trap, a stack overflow) leaves that input on disk, ready to become a regression
/// fixture under `Fixtures/hostile/<area>/`, instead of only a backtrace. The handler then hands
/// the signal to whatever handler was there before (Swift's backtracer, or the default).
///
/// Linux only; elsewhere `CrashGuard` does nothing. The handler touches only memory allocated
/// up front and calls only `open`/`write`/`close`/`sigaction`/`raise`.
final class CrashGuard: Sendable {
    private let slot: Int?

    /// Claims a slot for one loop of `area`; files are named `<area>-<seed><ext>`.
    init(area: String, ext: String) {
        #if os(Linux)
        slot = CrashRecorder.claim(area: area, ext: ext)
        #else
        slot = nil
        #endif
    }

    deinit {
        #if os(Linux)
        if let slot { CrashRecorder.release(slot) }
        #endif
    }

    /// Records the input about to be decoded (and the seed it came from) for the crash handler.
    func arm(_ bytes: [UInt8], seed: UInt64) {
        #if os(Linux)
        if let slot { CrashRecorder.arm(slot, bytes, seed: seed) }
        #endif
    }

    /// The input was handled without crashing.
    func disarm() {
        #if os(Linux)
        if let slot { CrashRecorder.slots[slot].length = 0 }
        #endif
    }

    /// Where crashing inputs are written.
    static var directory: URL { FileManager.default.temporaryDirectory.appendingPathComponent("roundup-hostile-crashes") }
}

#if os(Linux)
/// The raw state behind `CrashGuard`: fixed slots of preallocated memory, and the signal handler.
enum CrashRecorder {
    struct Slot {
        var buffer: UnsafeMutablePointer<UInt8>
        var length: Int
        var seed: UInt64
        var thread: pthread_t
        /// `<dir>/<area>-` as a C string, the seed is appended after it, then `ext`.
        var prefix: UnsafeMutablePointer<CChar>
        var ext: UnsafeMutablePointer<CChar>
        /// Scratch space for the path, so the handler allocates nothing.
        var path: UnsafeMutablePointer<CChar>
    }

    static let slotCount = 16
    static let capacity = 1 << 20
    static let fatalSignals: [Int32] = [SIGILL, SIGTRAP, SIGSEGV, SIGBUS, SIGFPE, SIGABRT]

    nonisolated(unsafe) static let slots: UnsafeMutablePointer<Slot> = {
        let p = UnsafeMutablePointer<Slot>.allocate(capacity: slotCount)
        for i in 0..<slotCount {
            p.advanced(by: i).initialize(to: Slot(
                buffer: .allocate(capacity: capacity), length: 0, seed: 0, thread: pthread_self(),
                prefix: .allocate(capacity: 1024), ext: .allocate(capacity: 32), path: .allocate(capacity: 1100)))
        }
        return p
    }()

    /// The handlers that were installed before ours, indexed by signal number.
    nonisolated(unsafe) static let previous: UnsafeMutablePointer<sigaction> = .allocate(capacity: 65)

    private static let used = Mutex<[Bool]>(Array(repeating: false, count: slotCount))

    private static let installed: Bool = {
        try? FileManager.default.createDirectory(at: CrashGuard.directory, withIntermediateDirectories: true)
        _ = slots
        for signal in fatalSignals {
            var action = sigaction()
            action.__sigaction_handler.sa_sigaction = crashHandler
            action.sa_flags = SA_SIGINFO | SA_ONSTACK
            sigemptyset(&action.sa_mask)
            sigaction(signal, &action, previous.advanced(by: Int(signal)))
        }
        return true
    }()

    static func claim(area: String, ext: String) -> Int? {
        _ = installed
        ensureAlternateStack()
        guard let index = used.withLock({ used -> Int? in
            guard let free = used.firstIndex(of: false) else { return nil }
            used[free] = true
            return free
        }) else { return nil }
        let prefix = CrashGuard.directory.appendingPathComponent("\(area)-").path
        copyCString(prefix, into: slots[index].prefix, capacity: 1000)
        copyCString(ext, into: slots[index].ext, capacity: 32)
        slots[index].length = 0
        return index
    }

    static func release(_ index: Int) {
        slots[index].length = 0
        used.withLock { $0[index] = false }
    }

    static func arm(_ index: Int, _ bytes: [UInt8], seed: UInt64) {
        let count = min(bytes.count, capacity)
        bytes.withUnsafeBufferPointer { source in
            if let base = source.baseAddress { slots[index].buffer.update(from: base, count: count) }
        }
        slots[index].seed = seed
        slots[index].thread = pthread_self()
        slots[index].length = max(count, 1)
    }

    private static func copyCString(_ text: String, into buffer: UnsafeMutablePointer<CChar>, capacity: Int) {
        var i = 0
        for byte in text.utf8 where i < capacity - 1 {
            buffer[i] = CChar(bitPattern: byte)
            i += 1
        }
        buffer[i] = 0
    }

    /// A stack overflow can only be reported from an alternate signal stack; give this thread one.
    private static func ensureAlternateStack() {
        var current = stack_t()
        guard sigaltstack(nil, &current) == 0, Int(current.ss_flags) & Int(SS_DISABLE) != 0 else { return }
        let size = 1 << 16
        var stack = stack_t()
        stack.ss_sp = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
        stack.ss_size = size
        stack.ss_flags = 0
        sigaltstack(&stack, nil)
    }

    /// Writes every armed input (only the crashing thread's, when it is one of them) and a note.
    static func dump() {
        let me = pthread_self()
        var mine = false
        for i in 0..<slotCount where slots[i].length > 0 && pthread_equal(slots[i].thread, me) != 0 { mine = true }
        for i in 0..<slotCount where slots[i].length > 0 && (!mine || pthread_equal(slots[i].thread, me) != 0) {
            let slot = slots[i]
            var n = 0
            var p = slot.prefix
            while p.pointee != 0 && n < 1000 { slot.path[n] = p.pointee; n += 1; p += 1 }
            slot.path[n] = 0x30; slot.path[n + 1] = 0x78; n += 2  // "0x"
            var shift = 60
            var started = false
            while shift >= 0 {
                let digit = Int((slot.seed >> UInt64(shift)) & 0xF)
                if digit != 0 || started || shift == 0 {
                    started = true
                    slot.path[n] = CChar(digit < 10 ? 0x30 + digit : 0x57 + digit)
                    n += 1
                }
                shift -= 4
            }
            p = slot.ext
            while p.pointee != 0 && n < 1090 { slot.path[n] = p.pointee; n += 1; p += 1 }
            slot.path[n] = 0
            let fd = open(slot.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            if fd >= 0 {
                _ = write(fd, slot.buffer, slot.length)
                close(fd)
            }
            writeStderr("\nhostile: a generated input crashed the decoder; it is saved as ")
            _ = write(2, slot.path, strlen(slot.path))
            writeStderr("\nhostile: move it into Fixtures/hostile/<area>/ to keep it as a regression fixture\n")
        }
    }

    private static func writeStderr(_ text: StaticString) {
        _ = write(2, text.utf8Start, text.utf8CodeUnitCount)
    }
}

/// Dumps the armed inputs, restores the previous handler and lets the signal happen again under it.
private func crashHandler(_ signal: Int32, _ info: UnsafeMutablePointer<siginfo_t>?, _ context: UnsafeMutableRawPointer?) {
    CrashRecorder.dump()
    sigaction(signal, CrashRecorder.previous.advanced(by: Int(signal)), nil)
    // A fault re-executes on return and reaches the restored handler; a raised signal must be raised again.
    if signal == SIGABRT || signal == SIGTRAP || info?.pointee.si_code ?? 0 <= 0 { raise(signal) }
}
#endif
