/// The third line of the canonical request: every query parameter, escaped and sorted.
///
/// The query is taken as sent and each name and value is decoded and escaped again, so the
/// result does not depend on how the caller happened to escape it. Parameters are sorted by
/// escaped name, then by escaped value, comparing bytes; a parameter without `=` gets an empty
/// value (`?lifecycle` signs as `lifecycle=`).
enum CanonicalQuery {
    static func make(_ query: String) -> String {
        var parameters: [(name: String, value: String)] = []
        for component in query.split(separator: "&", omittingEmptySubsequences: true) {
            let name: Substring
            let value: Substring
            if let equals = component.firstIndex(of: "=") {
                name = component[..<equals]
                value = component[component.index(after: equals)...]
            } else {
                name = component
                value = ""
            }
            parameters.append((URIEncoding.reencode(name), URIEncoding.reencode(value)))
        }
        parameters.sort { lhs, rhs in
            if lhs.name != rhs.name { return lhs.name.utf8.lexicographicallyPrecedes(rhs.name.utf8) }
            return lhs.value.utf8.lexicographicallyPrecedes(rhs.value.utf8)
        }
        return parameters.map { "\($0.name)=\($0.value)" }.joined(separator: "&")
    }
}
