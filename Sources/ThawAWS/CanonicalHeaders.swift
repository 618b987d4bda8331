/// The canonical header block and the signed-headers list of a canonical request.
///
/// Names are lowercased and sorted by byte; values lose surrounding whitespace and have inner
/// runs of spaces collapsed to one. A header given several times is signed once, its values
/// joined by commas in the order given. A value folded over several lines is signed as its
/// lines, trimmed and joined by commas, which is what the published test suite expects.
struct CanonicalHeaders: Sendable, Equatable {
    /// `name:value\n` for every header, sorted by name.
    let block: String
    /// The sorted names joined by `;`.
    let signedHeaders: String

    init(_ headers: [SignableRequest.Header]) {
        var valuesByName: [String: [String]] = [:]
        var names: [String] = []
        for header in headers {
            let name = Self.canonicalName(header.name)
            if valuesByName[name] == nil { names.append(name) }
            valuesByName[name, default: []].append(Self.canonicalValue(header.value))
        }
        names.sort { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        block = names.map { name in
            "\(name):\(valuesByName[name, default: []].joined(separator: ","))\n"
        }.joined()
        signedHeaders = names.joined(separator: ";")
    }

    static func canonicalName(_ name: String) -> String {
        String(name.trimmingSpacesAndTabs()).lowercased()
    }

    static func canonicalValue(_ value: String) -> String {
        value.split(whereSeparator: \.isNewline)
            .map(collapsingWhitespaceRuns)
            .filter { !$0.isEmpty }
            .joined(separator: ",")
    }

    /// Trims spaces and tabs at both ends and turns every inner run of them into one space.
    private static func collapsingWhitespaceRuns(_ line: Substring) -> String {
        line.split(whereSeparator: { $0 == " " || $0 == "\t" }).joined(separator: " ")
    }
}

extension StringProtocol {
    /// The text without spaces and tabs at either end; other whitespace is content.
    func trimmingSpacesAndTabs() -> SubSequence {
        let isBlank: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let first = firstIndex(where: { !isBlank($0) }),
              let last = lastIndex(where: { !isBlank($0) }) else {
            return self[endIndex...]
        }
        return self[first...last]
    }
}
