import Foundation
import FoundationXML

/// The parts of S3's XML replies Thaw reads: ListObjectsV2 pages and error documents.
/// Parsed with Foundation's XMLParser (libxml2).
struct S3XML {
    /// Text of every element, by element name, in document order.
    private(set) var values: [String: [String]] = [:]

    init(_ bytes: [UInt8]) throws {
        let parser = XMLParser(data: Data(bytes))
        let collector = Collector()
        parser.delegate = collector
        guard parser.parse() else {
            throw StoreError(.unavailable, "the S3 server sent XML that does not parse: \(parser.parserError.map { "\($0)" } ?? "unknown error")")
        }
        values = collector.values
    }

    func first(_ name: String) -> String? { values[name]?.first }
    func all(_ name: String) -> [String] { values[name] ?? [] }

    private final class Collector: NSObject, XMLParserDelegate {
        var values: [String: [String]] = [:]
        var text = ""

        func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?,
                    qualifiedName: String?, attributes: [String: String] = [:]) {
            text = ""
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) { text += string }

        func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName: String?) {
            values[elementName, default: []].append(text)
            text = ""
        }
    }
}
