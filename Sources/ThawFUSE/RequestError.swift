/// A request's failure as the errno the kernel passes on to the caller of `open`, `read` or `stat`.
struct RequestError: Error, Sendable {
    var code: Int32

    /// What a libfuse callback returns for it: the negated errno.
    var reply: Int32 { -code }
}
