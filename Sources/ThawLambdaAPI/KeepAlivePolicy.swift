/// How long an idle instance of a function is kept warm, from the function's own arrivals.
///
/// This is the hybrid histogram policy of Shahrad et al., "Serverless in the Wild" (ATC 2020),
/// which Medes' keep-alive and keep-dedup periods start from: the gaps between a function's
/// invocations are kept, and an idle instance stays until the gap that covers `percentile` of
/// them has passed, times a safety `margin`. A function invoked every few seconds keeps its
/// instance for seconds; one invoked once an hour keeps it for an hour (up to `maximum`), since
/// a shorter keep-alive would expire every instance just before it is needed. With fewer than
/// `minimumSamples` gaps there is no pattern yet, and the operator's `initial` holds.
public struct KeepAlivePolicy: Sendable, Equatable {
    /// The keep-alive before a function has a pattern.
    public var initial: Double
    /// Bounds of any keep-alive, in seconds.
    public var minimum: Double
    public var maximum: Double
    public var percentile = 0.99
    public var margin = 1.1
    public var minimumSamples = 8

    /// - Parameter percentile: the operator's latency target, as the share of invocations that
    ///   should find an instance kept for them.
    public init(initial: Double, minimum: Double, maximum: Double, percentile: Double = 0.99) {
        self.percentile = percentile
        self.initial = initial
        self.minimum = minimum
        self.maximum = max(minimum, maximum)
    }

    /// The keep-alive, in seconds, for a function with `history`.
    public func keepAlive(for history: ArrivalHistory) -> Double {
        let gaps = history.gaps
        guard gaps.count >= minimumSamples else { return Swift.min(Swift.max(initial, minimum), maximum) }
        let sorted = gaps.sorted()
        let index = Swift.min(sorted.count - 1, Int((Double(sorted.count) * percentile).rounded(.up)) - 1)
        return Swift.min(Swift.max(sorted[Swift.max(index, 0)] * margin, minimum), maximum)
    }
}

/// The recent gaps between one function's invocations, in seconds, newest last.
public struct ArrivalHistory: Sendable, Equatable {
    /// Gaps kept: enough for a 99th percentile to mean something, few enough to follow change.
    public static let capacity = 256

    public private(set) var gaps: [Double] = []
    public private(set) var lastArrival: Double?

    public init() {}

    /// Notes an invocation at `time` (seconds on a monotonic clock).
    public mutating func record(at time: Double) {
        if let lastArrival {
            gaps.append(Swift.max(0, time - lastArrival))
            if gaps.count > Self.capacity { gaps.removeFirst(gaps.count - Self.capacity) }
        }
        lastArrival = time
    }
}
