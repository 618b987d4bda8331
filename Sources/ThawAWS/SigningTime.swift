import Foundation

/// The two renderings of the signing time that SigV4 uses, always in UTC.
struct SigningTime: Sendable, Equatable {
    /// `YYYYMMDDTHHMMSSZ`, sent as `X-Amz-Date` and placed in the string to sign.
    let amzDate: String
    /// `YYYYMMDD`, the first element of the credential scope and of the key derivation.
    let dateStamp: String

    init(_ date: Date) {
        let parts = Self.utc.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        let day = Self.digits(parts.year, 4) + Self.digits(parts.month, 2) + Self.digits(parts.day, 2)
        dateStamp = day
        amzDate = day + "T" + Self.digits(parts.hour, 2) + Self.digits(parts.minute, 2)
            + Self.digits(parts.second, 2) + "Z"
    }

    private static let utc: Calendar = {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(secondsFromGMT: 0)!
        return calendar
    }()

    private static func digits(_ value: Int?, _ width: Int) -> String {
        let text = String(value ?? 0)
        return String(repeating: "0", count: max(0, width - text.count)) + text
    }
}
