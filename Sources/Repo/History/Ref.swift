import Delta
import Foundation

/// A branch or a tag.
public struct Ref: Sendable, Equatable {
    public enum Kind: String, Sendable, Codable { case branch, tag }
    public var name: String
    public var kind: Kind
    public var target: ObjectID
    /// A tag's message (annotated tags), else nil.
    public var message: String?
    public var timestamp: Double
}
