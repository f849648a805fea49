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
}
