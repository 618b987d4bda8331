/// Parses a pax extended header: a sequence of `"%d %s=%s\n"` records (POSIX.1-2001 `pax`).
///
/// Values are bytes: `SCHILY.xattr.*` values are binary, everything else is UTF-8 text.
enum PaxRecords {
    static func parse(_ data: [UInt8], entry: String?) throws -> [(key: String, value: [UInt8])] {
        var records: [(key: String, value: [UInt8])] = []
        var position = 0
        while position < data.count {
            // Length: decimal digits, then a space; the length counts the whole record.
            var length = 0
            var cursor = position
            while cursor < data.count, data[cursor] >= UInt8(ascii: "0"), data[cursor] <= UInt8(ascii: "9") {
                length = length * 10 + Int(data[cursor] - UInt8(ascii: "0"))
                guard length <= data.count else { break }
                cursor += 1
            }
            guard cursor < data.count, data[cursor] == UInt8(ascii: " "), length > cursor - position + 1,
                  position + length <= data.count, data[position + length - 1] == UInt8(ascii: "\n")
            else {
                throw TarError(.invalidPax, "malformed record at offset \(position)", entry: entry)
            }
            let body = data[(cursor + 1)..<(position + length - 1)]
            guard let equals = body.firstIndex(of: UInt8(ascii: "=")) else {
                throw TarError(.invalidPax, "record without '=' at offset \(position)", entry: entry)
            }
            let key = String(decoding: body[body.startIndex..<equals], as: UTF8.self)
            records.append((key, Array(body[(equals + 1)...])))
            position += length
        }
        return records
    }

    /// Parses a pax time value: decimal seconds with an optional fraction, possibly negative.
    static func parseTime(_ value: [UInt8], entry: String?) throws -> Timestamp {
        let text = String(decoding: value, as: UTF8.self)
        var whole = Substring(text)
        var fraction = Substring("")
        if let dot = text.firstIndex(of: ".") {
            whole = text[text.startIndex..<dot]
            fraction = text[text.index(after: dot)...]
        }
        guard let seconds = Int64(whole), fraction.allSatisfy({ $0.isASCII && $0.isNumber }) else {
            throw TarError(.invalidPax, "time '\(text)' is not a decimal number", entry: entry)
        }
        var digits = Array(fraction.prefix(9))
        while digits.count < 9 { digits.append("0") }
        var nanoseconds = UInt32(String(digits)) ?? 0
        var secondsValue = seconds
        // "-1.5" means 1.5 s before the epoch: -2 s + 0.5 s.
        if text.hasPrefix("-") && nanoseconds > 0 {
            secondsValue -= 1
            nanoseconds = 1_000_000_000 - nanoseconds
        }
        return Timestamp(seconds: secondsValue, nanoseconds: nanoseconds)
    }

    static func parseNumber(_ value: [UInt8], key: String, entry: String?) throws -> UInt64 {
        guard let number = UInt64(String(decoding: value, as: UTF8.self)) else {
            throw TarError(.invalidPax, "\(key) '\(String(decoding: value, as: UTF8.self))' is not a number", entry: entry)
        }
        return number
    }
}
