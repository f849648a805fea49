import Foundation
import Synchronization
import Testing

@testable import Roundup

@Suite("Presence map")
struct PresenceMapTests {
    @Test("users start unknown; Login and Logout apply in EventTime order and late events are ignored")
    func ordering() {
        let map = PresenceMap()
        #expect(map.state(of: "p") == .unknown)
        #expect(map.apply(user: "p", online: true, eventTime: 100).changed)
        #expect(map.state(of: "p") == .online)
        let late = map.apply(user: "p", online: false, eventTime: 99)
        #expect(!late.applied)
        #expect(map.state(of: "p") == .online)
        #expect(map.apply(user: "p", online: false, eventTime: 100).applied)
        #expect(map.state(of: "p") == .offline)
    }

    @Test("a confirmation changes presence but not the EventTime guard")
    func confirmation() {
        let map = PresenceMap()
        map.apply(user: "p", online: false, eventTime: 500)
        map.confirm(user: "p", online: true)
        #expect(map.state(of: "p") == .online)
        #expect(!map.apply(user: "p", online: false, eventTime: 400).applied)
        #expect(map.apply(user: "p", online: false, eventTime: 501).changed)
        map.confirm(user: "new", online: false)
        #expect(map.apply(user: "new", online: true, eventTime: 1).applied)
    }

    @Test("online and offline counts follow every change, also from many tasks at once")
    func counts() async {
        let map = PresenceMap()
        await withTaskGroup(of: Void.self) { group in
            for i in 0..<1000 {
                group.addTask { map.apply(user: "u\(i)", online: i.isMultiple(of: 4), eventTime: 1) }
            }
        }
        #expect(map.counts.online == 250)
        #expect(map.counts.offline == 750)
        map.apply(user: "u1", online: true, eventTime: 2)
        #expect(map.counts.online == 251)
        #expect(map.counts.offline == 749)
    }
    @Test("the observer is called for every applied event at the same call depth, however many events came before")
    func observerDoesNotNest() {
        let map = PresenceMap()
        let depths = Mutex<[Int]>([])
        map.observe { _, _, _ in
            let depth = Thread.callStackReturnAddresses.count
            depths.withLock { $0.append(depth) }
        }
        for i in 0..<300 { map.apply(user: "u\(i % 7)", online: i % 2 == 0, eventTime: Int64(i)) }
        let seen = depths.withLock { $0 }
        #expect(seen.count == 300)
        // Before the fix, each event wrapped the stored closure in one more thunk: the 300th call
        // ran hundreds of frames deeper than the first.
        #expect(Set(seen).count == 1, "call depth went from \(seen.first ?? 0) to \(seen.last ?? 0)")
    }
}
