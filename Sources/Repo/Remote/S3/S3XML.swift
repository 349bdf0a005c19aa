import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

/// The few XML answers an S3 client reads (list results, errors, multipart uploads), parsed with
/// Foundation's XMLParser into the texts of their leaf elements, in document order.
enum S3XML {
    /// `(element name, text)` of every element that holds text.
    static func leaves(_ bytes: [UInt8]) -> [(String, String)] {
        guard !bytes.isEmpty else { return [] }
        let parser = XMLParser(data: Data(bytes))
        let collector = Collector()
        parser.delegate = collector
        parser.shouldProcessNamespaces = true
        _ = parser.parse()
        return collector.leaves
    }

    /// The text of the first element named `name`.
    static func text(of name: String, in bytes: [UInt8]) -> String? {
        leaves(bytes).first { $0.0 == name }?.1
    }

    /// The `<Code>` of an `<Error>` answer.
    static func errorCode(_ bytes: [UInt8]) -> String? {
        guard bytes.count < 1 << 16, String(decoding: bytes.prefix(512), as: UTF8.self).contains("<Error") else { return nil }
        return text(of: "Code", in: bytes)
    }

    /// Escapes text for an XML element.
    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    private final class Collector: NSObject, XMLParserDelegate {
        var leaves: [(String, String)] = []
        private var text = ""
        /// For each open element: whether it has child elements (then it is not a leaf).
        private var hasChildren: [Bool] = []

        func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?, qualifiedName: String?,
                    attributes: [String: String] = [:]) {
            if !hasChildren.isEmpty { hasChildren[hasChildren.count - 1] = true }
            hasChildren.append(false)
            text = ""
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) {
            text += string
        }

        func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName: String?) {
            if hasChildren.popLast() == false { leaves.append((elementName, text)) }
            text = ""
        }
    }
}
