/// Compares two byte sequences in time that depends only on their lengths, never on where they
/// differ, so a signature or token check leaks nothing to a caller timing it.
public func constantTimeEquals(_ a: some Collection<UInt8>, _ b: some Collection<UInt8>) -> Bool {
    guard a.count == b.count else { return false }
    var difference: UInt8 = 0
    for (x, y) in zip(a, b) { difference |= x ^ y }
    return difference == 0
}
