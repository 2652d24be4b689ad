"""The error classes of SPEC section 2, each tied one to one to a gRPC status code."""

import grpc


class OpError(Exception):
    """A failure while building or running a graph, with the node it concerns."""

    grpc_code = grpc.StatusCode.UNKNOWN

    def __init__(self, node_def=None, op=None, message=""):
        # Accept TF's positional order (node_def, op, message) and a bare message.
        if message == "" and isinstance(node_def, str) and op is None:
            node_def, message = None, node_def
        super().__init__(message)
        self.node_def = node_def
        self.op = op
        self.message = message

    @property
    def error_code(self):
        return self.grpc_code.value[0]

    def __str__(self):
        return self.message

    def __reduce__(self):
        return (type(self), (self.node_def, self.op, self.message))


def _make(name, code):
    cls = type(name, (OpError,), {"grpc_code": code, "__doc__": f"Maps to gRPC status {code.name}."})
    return cls


CancelledError = _make("CancelledError", grpc.StatusCode.CANCELLED)
UnknownError = _make("UnknownError", grpc.StatusCode.UNKNOWN)
InvalidArgumentError = _make("InvalidArgumentError", grpc.StatusCode.INVALID_ARGUMENT)
DeadlineExceededError = _make("DeadlineExceededError", grpc.StatusCode.DEADLINE_EXCEEDED)
NotFoundError = _make("NotFoundError", grpc.StatusCode.NOT_FOUND)
AlreadyExistsError = _make("AlreadyExistsError", grpc.StatusCode.ALREADY_EXISTS)
PermissionDeniedError = _make("PermissionDeniedError", grpc.StatusCode.PERMISSION_DENIED)
ResourceExhaustedError = _make("ResourceExhaustedError", grpc.StatusCode.RESOURCE_EXHAUSTED)
FailedPreconditionError = _make("FailedPreconditionError", grpc.StatusCode.FAILED_PRECONDITION)
AbortedError = _make("AbortedError", grpc.StatusCode.ABORTED)
OutOfRangeError = _make("OutOfRangeError", grpc.StatusCode.OUT_OF_RANGE)
UnimplementedError = _make("UnimplementedError", grpc.StatusCode.UNIMPLEMENTED)
InternalError = _make("InternalError", grpc.StatusCode.INTERNAL)
UnavailableError = _make("UnavailableError", grpc.StatusCode.UNAVAILABLE)
DataLossError = _make("DataLossError", grpc.StatusCode.DATA_LOSS)
UnauthenticatedError = _make("UnauthenticatedError", grpc.StatusCode.UNAUTHENTICATED)

_BY_CODE = {
    cls.grpc_code: cls
    for cls in (
        CancelledError, UnknownError, InvalidArgumentError, DeadlineExceededError,
        NotFoundError, AlreadyExistsError, PermissionDeniedError, ResourceExhaustedError,
        FailedPreconditionError, AbortedError, OutOfRangeError, UnimplementedError,
        InternalError, UnavailableError, DataLossError, UnauthenticatedError,
    )
}

# TF's integer codes, for code that compares `e.error_code` with them.
OK, CANCELLED, UNKNOWN, INVALID_ARGUMENT, DEADLINE_EXCEEDED, NOT_FOUND = 0, 1, 2, 3, 4, 5
ALREADY_EXISTS, PERMISSION_DENIED, RESOURCE_EXHAUSTED, FAILED_PRECONDITION = 6, 7, 8, 9
ABORTED, OUT_OF_RANGE, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS = 10, 11, 12, 13, 14, 15
UNAUTHENTICATED = 16


def error_class_for_code(code):
    """The OpError subclass for a grpc.StatusCode (or its integer value)."""
    if isinstance(code, int):
        code = next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)
    return _BY_CODE.get(code, UnknownError)


def from_exception(exc, node_name=None):
    """Turns any exception into an OpError, keeping an OpError's class and message."""
    if isinstance(exc, OpError):
        return exc
    return UnknownError(None, None, f"{type(exc).__name__}: {exc}")
