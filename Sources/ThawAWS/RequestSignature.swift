/// What signing a request produced: the headers to send, and the intermediate texts that
/// explain a signature mismatch when a service rejects one.
public struct RequestSignature: Sendable, Hashable {
    /// The canonical request (task 1 of the SigV4 process).
    public let canonicalRequest: String
    /// The string to sign (task 2).
    public let stringToSign: String
    /// `YYYYMMDD/region/service/aws4_request`.
    public let credentialScope: String
    /// The lowercase names of the signed headers, joined by `;`.
    public let signedHeaders: String
    /// The hex HMAC-SHA256 of the string to sign (task 3).
    public let signature: String
    /// The `Authorization` header value (task 4).
    public let authorization: String
    /// The headers to add to the request: `Host` when the request had none, `X-Amz-Date`,
    /// `X-Amz-Content-Sha256` when enabled, `X-Amz-Security-Token` for temporary credentials,
    /// and `Authorization`.
    public let headers: [SignableRequest.Header]

    /// The request's headers with these added, replacing any the request already had under
    /// the same names (case-insensitively), so an old `Authorization` or date never lingers.
    public func applied(to requestHeaders: [SignableRequest.Header]) -> [SignableRequest.Header] {
        let replaced = Set(headers.map { $0.name.lowercased() })
        return requestHeaders.filter { !replaced.contains($0.name.lowercased()) } + headers
    }
}
