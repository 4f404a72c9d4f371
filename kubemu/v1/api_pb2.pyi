from google.protobuf import any_pb2 as _any_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateRequest(_message.Message):
    __slots__ = ("object", "dry_run")
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    object: _any_pb2.Any
    dry_run: bool
    def __init__(self, object: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("kind", "namespace", "name")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    kind: str
    namespace: str
    name: str
    def __init__(self, kind: _Optional[str] = ..., namespace: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("kind", "namespace", "label_selector", "field_selector")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    LABEL_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    FIELD_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    kind: str
    namespace: str
    label_selector: str
    field_selector: str
    def __init__(self, kind: _Optional[str] = ..., namespace: _Optional[str] = ..., label_selector: _Optional[str] = ..., field_selector: _Optional[str] = ...) -> None: ...

class ListResponse(_message.Message):
    __slots__ = ("items", "resource_version")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[_any_pb2.Any]
    resource_version: int
    def __init__(self, items: _Optional[_Iterable[_Union[_any_pb2.Any, _Mapping]]] = ..., resource_version: _Optional[int] = ...) -> None: ...

class UpdateRequest(_message.Message):
    __slots__ = ("object", "dry_run")
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    object: _any_pb2.Any
    dry_run: bool
    def __init__(self, object: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class PatchRequest(_message.Message):
    __slots__ = ("kind", "namespace", "name", "patch", "subresource")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PATCH_FIELD_NUMBER: _ClassVar[int]
    SUBRESOURCE_FIELD_NUMBER: _ClassVar[int]
    kind: str
    namespace: str
    name: str
    patch: str
    subresource: str
    def __init__(self, kind: _Optional[str] = ..., namespace: _Optional[str] = ..., name: _Optional[str] = ..., patch: _Optional[str] = ..., subresource: _Optional[str] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("kind", "namespace", "name", "propagation_policy", "grace_period_seconds", "has_grace_period", "precondition_uid", "precondition_resource_version")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROPAGATION_POLICY_FIELD_NUMBER: _ClassVar[int]
    GRACE_PERIOD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    HAS_GRACE_PERIOD_FIELD_NUMBER: _ClassVar[int]
    PRECONDITION_UID_FIELD_NUMBER: _ClassVar[int]
    PRECONDITION_RESOURCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    kind: str
    namespace: str
    name: str
    propagation_policy: str
    grace_period_seconds: int
    has_grace_period: bool
    precondition_uid: str
    precondition_resource_version: str
    def __init__(self, kind: _Optional[str] = ..., namespace: _Optional[str] = ..., name: _Optional[str] = ..., propagation_policy: _Optional[str] = ..., grace_period_seconds: _Optional[int] = ..., has_grace_period: _Optional[bool] = ..., precondition_uid: _Optional[str] = ..., precondition_resource_version: _Optional[str] = ...) -> None: ...

class ObjectResponse(_message.Message):
    __slots__ = ("object",)
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    object: _any_pb2.Any
    def __init__(self, object: _Optional[_Union[_any_pb2.Any, _Mapping]] = ...) -> None: ...

class WatchCreate(_message.Message):
    __slots__ = ("watch_id", "kind", "namespace", "resource_version", "label_selector", "field_selector", "allow_bookmarks")
    WATCH_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    LABEL_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    FIELD_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    ALLOW_BOOKMARKS_FIELD_NUMBER: _ClassVar[int]
    watch_id: int
    kind: str
    namespace: str
    resource_version: int
    label_selector: str
    field_selector: str
    allow_bookmarks: bool
    def __init__(self, watch_id: _Optional[int] = ..., kind: _Optional[str] = ..., namespace: _Optional[str] = ..., resource_version: _Optional[int] = ..., label_selector: _Optional[str] = ..., field_selector: _Optional[str] = ..., allow_bookmarks: _Optional[bool] = ...) -> None: ...

class WatchCancel(_message.Message):
    __slots__ = ("watch_id",)
    WATCH_ID_FIELD_NUMBER: _ClassVar[int]
    watch_id: int
    def __init__(self, watch_id: _Optional[int] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("create", "cancel")
    CREATE_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    create: WatchCreate
    cancel: WatchCancel
    def __init__(self, create: _Optional[_Union[WatchCreate, _Mapping]] = ..., cancel: _Optional[_Union[WatchCancel, _Mapping]] = ...) -> None: ...

class WatchEvent(_message.Message):
    __slots__ = ("type", "object", "resource_version")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    type: str
    object: _any_pb2.Any
    resource_version: int
    def __init__(self, type: _Optional[str] = ..., object: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., resource_version: _Optional[int] = ...) -> None: ...

class WatchResponse(_message.Message):
    __slots__ = ("watch_id", "created", "canceled", "events", "status", "batch")
    WATCH_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    CANCELED_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    watch_id: int
    created: bool
    canceled: bool
    events: _containers.RepeatedCompositeFieldContainer[WatchEvent]
    status: Status
    batch: _containers.RepeatedCompositeFieldContainer[WatchResponse]
    def __init__(self, watch_id: _Optional[int] = ..., created: _Optional[bool] = ..., canceled: _Optional[bool] = ..., events: _Optional[_Iterable[_Union[WatchEvent, _Mapping]]] = ..., status: _Optional[_Union[Status, _Mapping]] = ..., batch: _Optional[_Iterable[_Union[WatchResponse, _Mapping]]] = ...) -> None: ...

class CallRequest(_message.Message):
    __slots__ = ("id", "create", "get", "update", "update_status", "patch", "delete")
    ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_FIELD_NUMBER: _ClassVar[int]
    GET_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_STATUS_FIELD_NUMBER: _ClassVar[int]
    PATCH_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    id: int
    create: CreateRequest
    get: GetRequest
    update: UpdateRequest
    update_status: UpdateRequest
    patch: PatchRequest
    delete: DeleteRequest
    def __init__(self, id: _Optional[int] = ..., create: _Optional[_Union[CreateRequest, _Mapping]] = ..., get: _Optional[_Union[GetRequest, _Mapping]] = ..., update: _Optional[_Union[UpdateRequest, _Mapping]] = ..., update_status: _Optional[_Union[UpdateRequest, _Mapping]] = ..., patch: _Optional[_Union[PatchRequest, _Mapping]] = ..., delete: _Optional[_Union[DeleteRequest, _Mapping]] = ...) -> None: ...

class CallResponse(_message.Message):
    __slots__ = ("id", "object", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: int
    object: _any_pb2.Any
    error: Status
    def __init__(self, id: _Optional[int] = ..., object: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., error: _Optional[_Union[Status, _Mapping]] = ...) -> None: ...

class StatusCause(_message.Message):
    __slots__ = ("reason", "message", "field")
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    reason: str
    message: str
    field: str
    def __init__(self, reason: _Optional[str] = ..., message: _Optional[str] = ..., field: _Optional[str] = ...) -> None: ...

class StatusDetails(_message.Message):
    __slots__ = ("name", "kind", "causes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CAUSES_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    causes: _containers.RepeatedCompositeFieldContainer[StatusCause]
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., causes: _Optional[_Iterable[_Union[StatusCause, _Mapping]]] = ...) -> None: ...

class Status(_message.Message):
    __slots__ = ("reason", "message", "code", "details")
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    reason: str
    message: str
    code: int
    details: StatusDetails
    def __init__(self, reason: _Optional[str] = ..., message: _Optional[str] = ..., code: _Optional[int] = ..., details: _Optional[_Union[StatusDetails, _Mapping]] = ...) -> None: ...
