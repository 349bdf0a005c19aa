import Delta

/// `extra.storage` (docs/format.md §3.7): whether the commit's tensors are the bytes it was given.
public enum CommitStorage: String, CommitExtraRecord {
    public static let member = "storage"

    case lossless
    /// Low-rank tensors replaced some it was given (``LossyRecord`` says which).
    case lossy
}
