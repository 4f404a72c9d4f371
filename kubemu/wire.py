"""How API errors cross gRPC: a status code plus a Status message in trailing metadata.

Shared by the API server (which raises) and the client library (which re-raises), so both
sides agree on one mapping.
"""
from __future__ import annotations

import grpc

from kubemu import errors
from kubemu.v1 import api_pb2

STATUS_KEY = "kubemu-status-bin"

GRPC_CODES: dict[str, grpc.StatusCode] = {
    "BadRequest": grpc.StatusCode.INVALID_ARGUMENT,
    "Invalid": grpc.StatusCode.INVALID_ARGUMENT,
    "NotFound": grpc.StatusCode.NOT_FOUND,
    "AlreadyExists": grpc.StatusCode.ALREADY_EXISTS,
    "Conflict": grpc.StatusCode.ABORTED,
    "Forbidden": grpc.StatusCode.PERMISSION_DENIED,
    "TooOld": grpc.StatusCode.OUT_OF_RANGE,
    "ServiceUnavailable": grpc.StatusCode.UNAVAILABLE,
}

# Options for both ends: a List of tens of thousands of objects exceeds gRPC's 4 MiB default.
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 256 * 1024 * 1024),
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
]


def to_status(e: errors.ApiError) -> api_pb2.Status:
    return api_pb2.Status(
        reason=e.reason, message=e.message, code=e.code,
        details=api_pb2.StatusDetails(
            name=e.name, kind=e.kind,
            causes=[api_pb2.StatusCause(reason=c.type, message=str(c), field=c.field)
                    for c in e.causes]))


def from_status(st: api_pb2.Status) -> errors.ApiError:
    cls = errors.REASONS.get(st.reason, errors.ApiError)
    causes = [errors.FieldError(c.reason, c.field, _detail(c)) for c in st.details.causes]
    err = cls(st.message, kind=st.details.kind, name=st.details.name, causes=causes)
    return err


def _detail(c: api_pb2.StatusCause) -> str:
    prefix = f"{c.field}: "
    return c.message[len(prefix):] if c.message.startswith(prefix) else c.message
