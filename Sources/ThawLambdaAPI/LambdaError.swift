/// An error the Lambda API answers with, shaped as AWS Lambda shapes it: the status, the
/// error's type in the `x-amzn-ErrorType` header, and `{"Type": "User", "message": …}` as the body,
/// so AWS clients raise the same exception they would against AWS.
public struct LambdaError: Error, Sendable, Equatable, CustomStringConvertible {
    public var status: Int
    public var type: String
    public var message: String
    /// Seconds a client should wait before trying again (`Retry-After`), for 429.
    public var retryAfterSeconds: Int?

    public init(status: Int, type: String, message: String, retryAfterSeconds: Int? = nil) {
        self.status = status
        self.type = type
        self.message = message
        self.retryAfterSeconds = retryAfterSeconds
    }

    public var description: String { "\(type): \(message)" }

    public static func notFound(_ message: String) -> LambdaError {
        LambdaError(status: 404, type: "ResourceNotFoundException", message: message)
    }

    public static func functionNotFound(_ name: String, arn: String) -> LambdaError {
        notFound("Function not found: \(arn)")
    }

    public static func conflict(_ message: String) -> LambdaError {
        LambdaError(status: 409, type: "ResourceConflictException", message: message)
    }

    public static func invalidParameter(_ message: String) -> LambdaError {
        LambdaError(status: 400, type: "InvalidParameterValueException", message: message)
    }

    public static func invalidRequestContent(_ message: String) -> LambdaError {
        LambdaError(status: 400, type: "InvalidRequestContentException", message: message)
    }

    public static func tooLarge(_ message: String) -> LambdaError {
        LambdaError(status: 413, type: "RequestTooLargeException", message: message)
    }

    public static func tooManyRequests(_ message: String, retryAfterSeconds: Int = 1) -> LambdaError {
        LambdaError(status: 429, type: "TooManyRequestsException", message: message, retryAfterSeconds: retryAfterSeconds)
    }

    public static func service(_ message: String) -> LambdaError {
        LambdaError(status: 500, type: "ServiceException", message: message)
    }

    public static func unknownOperation(_ method: String, _ path: String) -> LambdaError {
        LambdaError(status: 404, type: "UnknownOperationException", message: "No operation \(method) \(path)")
    }
}
