import Delta

/// The order a writer lays a checkpoint's tensors out in, across shards and within each file.
///
/// Trainers rarely write a fine-tune in its base's order: `safetensors.torch.save_file` (and so
/// `save_pretrained`, which calls it once per shard) sorts each file's tensors, while a writer that
/// keeps the model's own order (`state_dict()`) interleaves nothing. The benchmarks measure a
/// family whose base and fine-tunes are laid out differently (``FamilyLayout``).
public enum TensorOrder: String, Sendable, CaseIterable {
    /// Sorted by name, then split into shards in that order: what ModelFactory has always written.
    case name
    /// The model's `state_dict()` order, in the files and across shards.
    case stateDict = "state-dict"
    /// What Hugging Face's writers produce: shards split in `state_dict()` order (as
    /// `split_torch_state_dict_into_shards` does), then each file in `save_file`'s order: widest
    /// dtype first (safetensors' `Dtype` declaration order, reversed), then by name. For a BERT
    /// checkpoint that puts the int64 `position_ids` first, as the real MiniLM files have it.
    case saveFile = "save-file"

    /// `save_file`'s rank of a dtype: safetensors (0.4–0.8) sorts by its `Dtype` enum, descending
    /// (BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64).
    static func saveFileRank(_ dtype: DType) -> Int {
        switch dtype {
        case .bool: return 0
        case .u8: return 1
        case .i8: return 2
        case .f8e5m2: return 3
        case .f8e4m3: return 4
        case .i16: return 5
        case .u16: return 6
        case .f16: return 7
        case .bf16: return 8
        case .i32: return 9
        case .u32: return 10
        case .f32: return 11
        case .f64: return 12
        case .i64: return 13
        case .u64: return 14
        }
    }

    /// Splits `tensors` (in `state_dict()` order, with their dtypes and byte sizes) into at most
    /// `shards` groups of about equal size, each in this order's file order: indices into `tensors`.
    func layout(_ tensors: [(name: String, dtype: DType, bytes: Int)], shards: Int) -> [[Int]] {
        let split: [Int] = self == .name
            ? tensors.indices.sorted { tensors[$0].name < tensors[$1].name }
            : Array(tensors.indices)
        let total = tensors.reduce(0) { $0 + $1.bytes }
        var groups: [[Int]] = Array(repeating: [], count: max(1, shards))
        var running = 0
        for i in split {
            groups[min(groups.count - 1, running * groups.count / max(total, 1))].append(i)
            running += tensors[i].bytes
        }
        groups.removeAll { $0.isEmpty }
        guard self == .saveFile else { return groups }
        return groups.map { group in
            group.sorted { a, b in
                let ra = Self.saveFileRank(tensors[a].dtype), rb = Self.saveFileRank(tensors[b].dtype)
                return ra != rb ? ra > rb : tensors[a].name < tensors[b].name
            }
        }
    }
}

/// How a generated family's checkpoints are laid out relative to each other.
public enum FamilyLayout: String, Sendable, CaseIterable {
    /// Base and fine-tunes in one order (by name): a fine-tune's tensors come in its base's order.
    case aligned
    /// The base in its model's `state_dict()` order, the fine-tunes as `save_file` writes them:
    /// nearly every tensor sits elsewhere in the fine-tune than in the base (`encoder.layer.10`
    /// follows `encoder.layer.1`, and each layer's tensors come in another order).
    case reordered

    public var baseOrder: TensorOrder { self == .aligned ? .name : .stateDict }
    public var fineTuneOrder: TensorOrder { self == .aligned ? .name : .saveFile }
}
