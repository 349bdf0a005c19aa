import Foundation
import Synchronization

/// A value computed on a thread of its own from the moment it is created; ``value`` waits for it
/// (as often as asked). `afterwards` runs on that thread once the value is published: work that no
/// reader waits for. The merge uses it to take work off its single-threaded tail: the merged files'
/// SHA-256 (then their sync), and the commit's author (git's configuration, two processes).
final class BackgroundValue<Value: Sendable>: Sendable {
    private let result = Mutex<Value?>(nil)
    private let done = DispatchSemaphore(value: 0)

    init(_ compute: @escaping @Sendable () -> Value, afterwards: (@Sendable () -> Void)? = nil) {
        Thread { [self] in
            let value = compute()
            result.withLock { $0 = value }
            done.signal()
            afterwards?()
        }.start()
    }

    /// The value, once computed.
    var value: Value {
        done.wait()
        done.signal()
        return result.withLock { $0 }!
    }
}
