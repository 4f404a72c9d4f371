"""API errors, shaped like Kubernetes' metav1.Status so a client can branch on the reason.

Field errors render exactly as Kubernetes' field.Error does
(`spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated`), because
users compare them with what kubectl prints.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any


def render_value(value: Any) -> str:
    """Render a value as Go's field errors do: strings quoted, numbers and bools bare."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if value is None:
        return "null"
    return str(value)


@dataclasses.dataclass(frozen=True)
class FieldError:
    """One field error; `type` is Kubernetes' ErrorType name (FieldValueInvalid, ...)."""

    type: str
    field: str
    detail: str = ""
    value: Any = None

    def __str__(self) -> str:
        if self.type == "FieldValueInvalid":
            body = f"Invalid value: {render_value(self.value)}"
            return f"{self.field}: {body}: {self.detail}" if self.detail else f"{self.field}: {body}"
        if self.type == "FieldValueRequired":
            body = "Required value"
        elif self.type == "FieldValueDuplicate":
            body = f"Duplicate value: {render_value(self.value)}"
        elif self.type == "FieldValueNotSupported":
            body = f"Unsupported value: {render_value(self.value)}"
        elif self.type == "FieldValueForbidden":
            body = "Forbidden"
        elif self.type == "FieldValueTooLong":
            body = "Too long"
        elif self.type == "FieldValueNotFound":
            body = f"Not found: {render_value(self.value)}"
        else:
            body = "Internal error"
        return f"{self.field}: {body}: {self.detail}" if self.detail else f"{self.field}: {body}"


def invalid(field: str, value: Any, detail: str) -> FieldError:
    return FieldError("FieldValueInvalid", field, detail, value)


def required(field: str, detail: str = "") -> FieldError:
    return FieldError("FieldValueRequired", field, detail)


def duplicate(field: str, value: Any) -> FieldError:
    return FieldError("FieldValueDuplicate", field, "", value)


def not_supported(field: str, value: Any, supported: list[str]) -> FieldError:
    detail = "supported values: " + ", ".join(json.dumps(s) for s in supported) if supported else ""
    return FieldError("FieldValueNotSupported", field, detail, value)


def forbidden(field: str, detail: str) -> FieldError:
    return FieldError("FieldValueForbidden", field, detail)


def too_long(field: str, max_len: int) -> FieldError:
    return FieldError("FieldValueTooLong", field, f"may not be more than {max_len} bytes")


class ApiError(Exception):
    """An error the API returns; `reason` is what clients branch on."""

    reason = "InternalError"
    code = 500

    def __init__(self, message: str, *, kind: str = "", name: str = "",
                 causes: list[FieldError] | None = None):
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.name = name
        self.causes = list(causes or [])

    def __str__(self) -> str:
        return self.message


class BadRequest(ApiError):
    reason, code = "BadRequest", 400


class Invalid(ApiError):
    reason, code = "Invalid", 422

    @classmethod
    def of(cls, kind: str, name: str, errors: list[FieldError]) -> "Invalid":
        """`Service "web" is invalid: <err>` or `... is invalid: [<err>, <err>]`, as Kubernetes."""
        rendered = [str(e) for e in errors]
        body = rendered[0] if len(rendered) == 1 else "[" + ", ".join(rendered) + "]"
        return cls(f'{kind} "{name}" is invalid: {body}', kind=kind, name=name, causes=errors)


class NotFound(ApiError):
    reason, code = "NotFound", 404

    @classmethod
    def of(cls, resource: str, name: str) -> "NotFound":
        return cls(f'{resource} "{name}" not found', kind=resource, name=name)


class AlreadyExists(ApiError):
    reason, code = "AlreadyExists", 409

    @classmethod
    def of(cls, resource: str, name: str) -> "AlreadyExists":
        return cls(f'{resource} "{name}" already exists', kind=resource, name=name)


class Conflict(ApiError):
    reason, code = "Conflict", 409

    @classmethod
    def of(cls, resource: str, name: str, detail: str = "") -> "Conflict":
        detail = detail or ("the object has been modified; please apply your changes to the "
                            "latest version and try again")
        return cls(f'Operation cannot be fulfilled on {resource} "{name}": {detail}',
                   kind=resource, name=name)


class Forbidden(ApiError):
    reason, code = "Forbidden", 403


class TooOld(ApiError):
    """Kubernetes' 410 Gone: the requested revision left the retained history."""

    reason, code = "TooOld", 410


class Unavailable(ApiError):
    """The API server could not be reached (a client-side condition)."""

    reason, code = "ServiceUnavailable", 503


REASONS: dict[str, type[ApiError]] = {
    cls.reason: cls
    for cls in (ApiError, BadRequest, Invalid, NotFound, AlreadyExists, Conflict, Forbidden,
                TooOld, Unavailable)
}
