import Foundation
import FoundationXML

/// The parts of S3's XML replies Thaw reads: ListObjectsV2 pages, DeleteObjects results and
/// error documents. Parsed with Foundation's XMLParser (libxml2).
struct S3XML {
    /// Text of every element, by element name, in document order.
    private(set) var values: [String: [String]] = [:]
    /// For every element that has child elements, by element name, in document order: its
    /// children's text by name (the last where a name repeats).
    private(set) var groups: [String: [[String: String]]] = [:]

    init(_ bytes: [UInt8]) throws {
        let parser = XMLParser(data: Data(bytes))
        let collector = Collector()
        parser.delegate = collector
        guard parser.parse() else {
            throw StoreError(.unavailable, "the S3 server sent XML that does not parse: \(parser.parserError.map { "\($0)" } ?? "unknown error")")
        }
        values = collector.values
        groups = collector.groups
    }

    func first(_ name: String) -> String? { values[name]?.first }
    func all(_ name: String) -> [String] { values[name] ?? [] }
    /// The children of each element named `name`: what keeps a DeleteObjects `<Error>`'s key,
    /// code and message together, where `all("Key")` would mix them with `<Deleted>` keys.
    func elements(_ name: String) -> [[String: String]] { groups[name] ?? [] }

    private final class Collector: NSObject, XMLParserDelegate {
        var values: [String: [String]] = [:]
        var groups: [String: [[String: String]]] = [:]
        /// The children seen so far of each open element, innermost last.
        var open: [[String: String]] = []
        var text = ""

        func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?,
                    qualifiedName: String?, attributes: [String: String] = [:]) {
            text = ""
            open.append([:])
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) { text += string }

        func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName: String?) {
            values[elementName, default: []].append(text)
            if let children = open.popLast(), !children.isEmpty { groups[elementName, default: []].append(children) }
            if !open.isEmpty { open[open.count - 1][elementName] = text }
            text = ""
        }
    }
}
