import Testing
@testable import ThawLambdaAPI

struct PlacementTests {
    let functions = (0..<1000).map { "function-\($0)" }

    func homes(_ agents: [String]) -> [String: String] {
        Dictionary(uniqueKeysWithValues: functions.map { ($0, Placement.order(of: $0, among: agents).first!) })
    }

    @Test func everyAgentComputesTheSameHomeWhateverOrderItListsAgentsIn() {
        for function in functions.prefix(100) {
            #expect(Placement.order(of: function, among: ["a", "b", "c"]) == Placement.order(of: function, among: ["c", "a", "b"]))
        }
    }

    @Test func functionsSpreadEvenlyOverAgents() {
        let counts = Dictionary(grouping: homes(["a", "b", "c", "d"]).values, by: { $0 }).mapValues(\.count)
        #expect(counts.count == 4)
        for (agent, count) in counts {
            #expect((200...300).contains(count), "agent \(agent) is home to \(count) of 1000 functions")
        }
    }

    @Test func onlyALeavingAgentsFunctionsMoveAndAJoiningOneTakesOnlyItsOwn() {
        let before = homes(["a", "b", "c"])
        let after = homes(["a", "b"])
        for function in functions {
            if before[function] != "c" { #expect(after[function] == before[function], "\(function) moved needlessly") }
            // A function of the leaving agent goes to the next agent in its own order.
            if before[function] == "c" { #expect(after[function] == Placement.order(of: function, among: ["a", "b", "c"])[1]) }
        }
        let joined = homes(["a", "b", "c", "d"])
        let moved = functions.filter { joined[$0] != before[$0] }
        #expect(moved.allSatisfy { joined[$0] == "d" })
        #expect((180...320).contains(moved.count), "\(moved.count) functions moved to the new agent")
    }
}
