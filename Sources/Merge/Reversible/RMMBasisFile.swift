import Delta
import Foundation

/// `rmm.safetensors`, the basis of a reversible merge (docs/format.md §4.7): the one type that
/// knows its tensor names, shapes and `__metadata__`, for writing and for reading.
///
/// The file is an ordinary safetensors file of F32 tensors, `<module>.<suffix>` for every module
/// in order, each module's arrays in ``RMMModule/layout(variant:k:rows:columns:rank:experts:center:)``
/// order. A writer appends fitted modules (``append(_:metadata:)`` gives the tensors to store),
/// then asks for the ``header()``; a reader parses the header (``init(header:)``) and loads a
/// module's tensors by name (``module(_:load:)``). Nothing here touches storage.
public struct RMMBasisFile: Sendable, Equatable {
    public static let fileName = "rmm.safetensors"
    /// `__metadata__.format` and `version`; a reader refuses other values.
    public static let format = "mrepo-rmm"
    public static let version = "1"

    /// One object of `__metadata__.modules`, members in the order the format lists them.
    public struct ModuleMetadata: Codable, Sendable, Equatable {
        /// The module's name; its tensors are `<module>.<suffix>`.
        public var module: String
        /// The base model's tensor the module's ΔW applies to.
        public var baseTensor: String
        /// ΔW's shape as B·A (output × input features).
        public var rows: Int
        public var columns: Int
        /// The experts' factor rank (0 for a dense module).
        public var rank: Int
        /// The module's basis size (≤ the requested K for `layer` and `dense`).
        public var k: Int
        public var variant: RMMVariant
        /// Adapter merges only: each expert's LoRA scale (folded into L), and whether the base
        /// weight is stored transposed.
        public var scales: [Double]?
        public var transposed: Bool?

        enum CodingKeys: String, CodingKey {
            case module, baseTensor = "base_tensor", rows, columns, rank, k, variant, scales, transposed
        }

        public init(module: String, baseTensor: String, rows: Int, columns: Int, rank: Int, k: Int, variant: RMMVariant,
                    scales: [Double]? = nil, transposed: Bool? = nil) {
            self.module = module
            self.baseTensor = baseTensor
            self.rows = rows
            self.columns = columns
            self.rank = rank
            self.k = k
            self.variant = variant
            self.scales = scales
            self.transposed = transposed
        }
    }

    public var kind: RMMExpertKind
    /// The requested variant (a module may be `dense` instead).
    public var variant: RMMVariant
    /// The requested basis size K.
    public var basis: Int
    public var center: Bool
    /// The experts' names, in expert order (index i of every coefficient array).
    public var experts: [String]
    public private(set) var modules: [ModuleMetadata]

    public init(kind: RMMExpertKind, variant: RMMVariant, basis: Int, center: Bool, experts: [String], modules: [ModuleMetadata] = []) {
        self.kind = kind
        self.variant = variant
        self.basis = basis
        self.center = center
        self.experts = experts
        self.modules = modules
    }

    // MARK: - Layout

    /// A module's tensors in file order: name and shape (all F32).
    public func layout(of meta: ModuleMetadata) -> [(name: String, shape: Shape)] {
        RMMModule.layout(variant: meta.variant, k: meta.k, rows: meta.rows, columns: meta.columns, rank: meta.rank, experts: experts.count,
                         center: center).map { (meta.module + "." + $0.0, $0.1) }
    }

    /// Every tensor of the file, in file order.
    public var layout: [(name: String, shape: Shape)] { modules.flatMap { layout(of: $0) } }

    /// The module whose update applies to the base tensor `name`.
    public func module(forBaseTensor name: String) -> ModuleMetadata? { modules.first { $0.baseTensor == name } }

    // MARK: - Writing

    /// Adds a fitted module; returns its tensors as the file names them, in file order, to be
    /// stored as F32.
    /// - Throws: ``MergeError/invalidInputs(method:problem:)`` when the module does not belong
    ///   to this file (other experts, centring or shape than `metadata` says).
    public mutating func append(_ module: RMMModule, metadata: ModuleMetadata) throws -> [(name: String, shape: Shape, values: [Float])] {
        guard module.expertCount == experts.count, module.center == center, module.variant == metadata.variant, module.k == metadata.k,
              module.rank == metadata.rank, module.rows == metadata.rows, module.columns == metadata.columns else {
            throw MergeError.invalidInputs(method: RMM.id, problem: "module '\(metadata.module)' does not match its metadata in \(Self.fileName)")
        }
        modules.append(metadata)
        return module.tensors.map { (metadata.module + "." + $0.suffix, $0.shape, $0.values) }
    }

    /// `__metadata__`, in the order docs/format.md §4.7 lists it.
    public func metadata() throws -> [(key: String, value: String)] {
        [
            ("format", Self.format), ("version", Self.version), ("kind", kind.rawValue), ("variant", variant.rawValue),
            ("basis", "\(basis)"), ("center", center ? "true" : "false"),
            ("experts", try JSONValueCoding.text(experts)),
            ("modules", try JSONValueCoding.text(modules)),
        ]
    }

    /// The file's header (its first bytes: length and JSON) and its tensors with their data offsets, in file order.
    public func header() throws -> (bytes: [UInt8], tensors: [TensorInfo]) {
        let encoded = SafetensorsHeader.encode(tensors: layout.map { ($0.name, DType.f32, $0.shape) }, metadata: try metadata())
        return (encoded.bytes, encoded.infos)
    }

    // MARK: - Reading

    /// Parses the header of an `rmm.safetensors` file.
    /// - Throws: ``MergeError/invalidRecipe(file:problem:)`` naming the file, when the header is
    ///   not JSON, lacks a key, or has an unknown format, version, kind or variant.
    public init(header: [UInt8]) throws {
        func bad(_ problem: String) -> MergeError { .invalidRecipe(file: Self.fileName, problem: problem) }
        // A safetensors header: parsed as a value (its metadata is string → string; the JSON
        // records inside are decoded below).
        guard header.count > 8, let root = try? JSONValue.parse(Array(header[8...])), let members = root["__metadata__"]?.objectValue else {
            throw bad("the header has no __metadata__")
        }
        func value(_ key: String) throws -> String {
            guard let text = members.first(where: { $0.key == key })?.value.stringValue else { throw bad("__metadata__ has no '\(key)'") }
            return text
        }
        guard try value("format") == Self.format else { throw bad("__metadata__ format is '\(try value("format"))', not '\(Self.format)'") }
        guard try value("version") == Self.version else {
            throw bad("version \(try value("version")) is not supported (this mrepo reads version \(Self.version))")
        }
        guard let kind = RMMExpertKind(rawValue: try value("kind")) else { throw bad("unknown kind '\(try value("kind"))'") }
        guard let variant = RMMVariant(rawValue: try value("variant")) else { throw bad("unknown variant '\(try value("variant"))'") }
        guard let basis = Int(try value("basis")) else { throw bad("basis '\(try value("basis"))' is not an integer") }
        let center: Bool
        switch try value("center") {
        case "true": center = true
        case "false": center = false
        case let other: throw bad("center '\(other)' is not true or false")
        }
        let experts: [String]
        let modules: [ModuleMetadata]
        do {
            experts = try JSONValueCoding.decode([String].self, text: try value("experts"))
            modules = try JSONValueCoding.decode([ModuleMetadata].self, text: try value("modules"))
        } catch let error as MergeError {
            throw error
        } catch {
            throw bad("bad experts or module metadata (\("\(error)".prefix(160)))")
        }
        self.init(kind: kind, variant: variant, basis: basis, center: center, experts: experts, modules: modules)
    }

    /// Reads one module's basis.
    /// - Parameter load: the values of the file's tensor `name`, which must have `shape`.
    public func module(_ meta: ModuleMetadata, load: (_ name: String, _ shape: Shape) throws -> [Float]) throws -> RMMModule {
        let values = try layout(of: meta).map { try load($0.name, $0.shape) }
        return try RMMModule(variant: meta.variant, k: meta.k, rows: meta.rows, columns: meta.columns, rank: meta.rank,
                             expertCount: experts.count, center: center, values: values)
    }
}
