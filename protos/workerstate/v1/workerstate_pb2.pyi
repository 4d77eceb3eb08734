import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WorkerState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKER_STATE_UNSPECIFIED: _ClassVar[WorkerState]
    WORKER_STATE_ASSIGNED: _ClassVar[WorkerState]
    WORKER_STATE_WORKING: _ClassVar[WorkerState]
    WORKER_STATE_IN_REVIEW: _ClassVar[WorkerState]
    WORKER_STATE_APPROVED: _ClassVar[WorkerState]
    WORKER_STATE_COMPLETED: _ClassVar[WorkerState]
    WORKER_STATE_CONFLICTED: _ClassVar[WorkerState]
    WORKER_STATE_FAILED: _ClassVar[WorkerState]

class StaleLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STALE_LEVEL_UNSPECIFIED: _ClassVar[StaleLevel]
    STALE_LEVEL_OK: _ClassVar[StaleLevel]
    STALE_LEVEL_WARN: _ClassVar[StaleLevel]
    STALE_LEVEL_STALE: _ClassVar[StaleLevel]
    STALE_LEVEL_DEAD: _ClassVar[StaleLevel]

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    EVENT_TYPE_ASSIGNED: _ClassVar[EventType]
    EVENT_TYPE_STATE_CHANGED: _ClassVar[EventType]
    EVENT_TYPE_FAILED: _ClassVar[EventType]
    EVENT_TYPE_LIVENESS_CHANGED: _ClassVar[EventType]
    EVENT_TYPE_SNAPSHOT: _ClassVar[EventType]
    EVENT_TYPE_LABELS_CHANGED: _ClassVar[EventType]
    EVENT_TYPE_DELETED: _ClassVar[EventType]
WORKER_STATE_UNSPECIFIED: WorkerState
WORKER_STATE_ASSIGNED: WorkerState
WORKER_STATE_WORKING: WorkerState
WORKER_STATE_IN_REVIEW: WorkerState
WORKER_STATE_APPROVED: WorkerState
WORKER_STATE_COMPLETED: WorkerState
WORKER_STATE_CONFLICTED: WorkerState
WORKER_STATE_FAILED: WorkerState
STALE_LEVEL_UNSPECIFIED: StaleLevel
STALE_LEVEL_OK: StaleLevel
STALE_LEVEL_WARN: StaleLevel
STALE_LEVEL_STALE: StaleLevel
STALE_LEVEL_DEAD: StaleLevel
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_TYPE_ASSIGNED: EventType
EVENT_TYPE_STATE_CHANGED: EventType
EVENT_TYPE_FAILED: EventType
EVENT_TYPE_LIVENESS_CHANGED: EventType
EVENT_TYPE_SNAPSHOT: EventType
EVENT_TYPE_LABELS_CHANGED: EventType
EVENT_TYPE_DELETED: EventType

class Worker(_message.Message):
    __slots__ = ("task_id", "state", "branch", "worktree", "description", "created_at", "state_changed_at", "last_heartbeat_at", "stale_level", "revision", "last_activity", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    WORKTREE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STATE_CHANGED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_AT_FIELD_NUMBER: _ClassVar[int]
    STALE_LEVEL_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    LAST_ACTIVITY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    state: WorkerState
    branch: str
    worktree: str
    description: str
    created_at: _timestamp_pb2.Timestamp
    state_changed_at: _timestamp_pb2.Timestamp
    last_heartbeat_at: _timestamp_pb2.Timestamp
    stale_level: StaleLevel
    revision: int
    last_activity: str
    labels: _containers.ScalarMap[str, str]
    def __init__(self, task_id: _Optional[str] = ..., state: _Optional[_Union[WorkerState, str]] = ..., branch: _Optional[str] = ..., worktree: _Optional[str] = ..., description: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state_changed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_heartbeat_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., stale_level: _Optional[_Union[StaleLevel, str]] = ..., revision: _Optional[int] = ..., last_activity: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class WorkerEvent(_message.Message):
    __slots__ = ("revision", "type", "worker", "from_state", "reason", "time", "from_stale_level", "from_labels", "actor")
    class FromLabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REVISION_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    FROM_STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    FROM_STALE_LEVEL_FIELD_NUMBER: _ClassVar[int]
    FROM_LABELS_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    revision: int
    type: EventType
    worker: Worker
    from_state: WorkerState
    reason: str
    time: _timestamp_pb2.Timestamp
    from_stale_level: StaleLevel
    from_labels: _containers.ScalarMap[str, str]
    actor: str
    def __init__(self, revision: _Optional[int] = ..., type: _Optional[_Union[EventType, str]] = ..., worker: _Optional[_Union[Worker, _Mapping]] = ..., from_state: _Optional[_Union[WorkerState, str]] = ..., reason: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., from_stale_level: _Optional[_Union[StaleLevel, str]] = ..., from_labels: _Optional[_Mapping[str, str]] = ..., actor: _Optional[str] = ...) -> None: ...

class CreateWorkerRequest(_message.Message):
    __slots__ = ("task_id", "branch", "worktree", "description", "request_id", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    WORKTREE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    branch: str
    worktree: str
    description: str
    request_id: str
    labels: _containers.ScalarMap[str, str]
    def __init__(self, task_id: _Optional[str] = ..., branch: _Optional[str] = ..., worktree: _Optional[str] = ..., description: _Optional[str] = ..., request_id: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class CreateWorkerResponse(_message.Message):
    __slots__ = ("worker", "revision")
    WORKER_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    worker: Worker
    revision: int
    def __init__(self, worker: _Optional[_Union[Worker, _Mapping]] = ..., revision: _Optional[int] = ...) -> None: ...

class TransitionRequest(_message.Message):
    __slots__ = ("task_id", "from_state", "to_state", "request_id", "expected_revision", "reason")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_STATE_FIELD_NUMBER: _ClassVar[int]
    TO_STATE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    from_state: WorkerState
    to_state: WorkerState
    request_id: str
    expected_revision: int
    reason: str
    def __init__(self, task_id: _Optional[str] = ..., from_state: _Optional[_Union[WorkerState, str]] = ..., to_state: _Optional[_Union[WorkerState, str]] = ..., request_id: _Optional[str] = ..., expected_revision: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class TransitionResponse(_message.Message):
    __slots__ = ("worker", "revision")
    WORKER_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    worker: Worker
    revision: int
    def __init__(self, worker: _Optional[_Union[Worker, _Mapping]] = ..., revision: _Optional[int] = ...) -> None: ...

class FailWorkerRequest(_message.Message):
    __slots__ = ("task_id", "reason", "request_id")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    reason: str
    request_id: str
    def __init__(self, task_id: _Optional[str] = ..., reason: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class FailWorkerResponse(_message.Message):
    __slots__ = ("worker", "revision")
    WORKER_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    worker: Worker
    revision: int
    def __init__(self, worker: _Optional[_Union[Worker, _Mapping]] = ..., revision: _Optional[int] = ...) -> None: ...

class GetWorkerRequest(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class GetWorkerResponse(_message.Message):
    __slots__ = ("worker", "revision")
    WORKER_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    worker: Worker
    revision: int
    def __init__(self, worker: _Optional[_Union[Worker, _Mapping]] = ..., revision: _Optional[int] = ...) -> None: ...

class ListWorkersRequest(_message.Message):
    __slots__ = ("states", "stale_levels", "page_size", "page_token", "label_selector")
    STATES_FIELD_NUMBER: _ClassVar[int]
    STALE_LEVELS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    LABEL_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[WorkerState]
    stale_levels: _containers.RepeatedScalarFieldContainer[StaleLevel]
    page_size: int
    page_token: str
    label_selector: str
    def __init__(self, states: _Optional[_Iterable[_Union[WorkerState, str]]] = ..., stale_levels: _Optional[_Iterable[_Union[StaleLevel, str]]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., label_selector: _Optional[str] = ...) -> None: ...

class ListWorkersResponse(_message.Message):
    __slots__ = ("workers", "revision", "next_page_token")
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    workers: _containers.RepeatedCompositeFieldContainer[Worker]
    revision: int
    next_page_token: str
    def __init__(self, workers: _Optional[_Iterable[_Union[Worker, _Mapping]]] = ..., revision: _Optional[int] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("task_id", "activity", "more")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ACTIVITY_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    activity: str
    more: _containers.RepeatedCompositeFieldContainer[HeartbeatRequest]
    def __init__(self, task_id: _Optional[str] = ..., activity: _Optional[str] = ..., more: _Optional[_Iterable[_Union[HeartbeatRequest, _Mapping]]] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("task_id", "state", "received_at", "more")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    state: WorkerState
    received_at: _timestamp_pb2.Timestamp
    more: _containers.RepeatedCompositeFieldContainer[HeartbeatResponse]
    def __init__(self, task_id: _Optional[str] = ..., state: _Optional[_Union[WorkerState, str]] = ..., received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., more: _Optional[_Iterable[_Union[HeartbeatResponse, _Mapping]]] = ...) -> None: ...

class WatchStateRequest(_message.Message):
    __slots__ = ("start_revision", "task_ids", "states", "send_initial_state", "liveness", "progress_notify", "label_selector")
    START_REVISION_FIELD_NUMBER: _ClassVar[int]
    TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    SEND_INITIAL_STATE_FIELD_NUMBER: _ClassVar[int]
    LIVENESS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_NOTIFY_FIELD_NUMBER: _ClassVar[int]
    LABEL_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    start_revision: int
    task_ids: _containers.RepeatedScalarFieldContainer[str]
    states: _containers.RepeatedScalarFieldContainer[WorkerState]
    send_initial_state: bool
    liveness: bool
    progress_notify: bool
    label_selector: str
    def __init__(self, start_revision: _Optional[int] = ..., task_ids: _Optional[_Iterable[str]] = ..., states: _Optional[_Iterable[_Union[WorkerState, str]]] = ..., send_initial_state: _Optional[bool] = ..., liveness: _Optional[bool] = ..., progress_notify: _Optional[bool] = ..., label_selector: _Optional[str] = ...) -> None: ...

class Synced(_message.Message):
    __slots__ = ("revision",)
    REVISION_FIELD_NUMBER: _ClassVar[int]
    revision: int
    def __init__(self, revision: _Optional[int] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("revision",)
    REVISION_FIELD_NUMBER: _ClassVar[int]
    revision: int
    def __init__(self, revision: _Optional[int] = ...) -> None: ...

class WatchStateResponse(_message.Message):
    __slots__ = ("events", "synced", "progress")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    SYNCED_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[WorkerEvent]
    synced: Synced
    progress: Progress
    def __init__(self, events: _Optional[_Iterable[_Union[WorkerEvent, _Mapping]]] = ..., synced: _Optional[_Union[Synced, _Mapping]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ...) -> None: ...

class ListEventsRequest(_message.Message):
    __slots__ = ("after_revision", "task_id", "limit")
    AFTER_REVISION_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    after_revision: int
    task_id: str
    limit: int
    def __init__(self, after_revision: _Optional[int] = ..., task_id: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListEventsResponse(_message.Message):
    __slots__ = ("events", "revision")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[WorkerEvent]
    revision: int
    def __init__(self, events: _Optional[_Iterable[_Union[WorkerEvent, _Mapping]]] = ..., revision: _Optional[int] = ...) -> None: ...

class SetLabelsRequest(_message.Message):
    __slots__ = ("task_id", "labels", "expected_revision", "request_id")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    labels: _containers.ScalarMap[str, str]
    expected_revision: int
    request_id: str
    def __init__(self, task_id: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., expected_revision: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class SetLabelsResponse(_message.Message):
    __slots__ = ("worker", "revision")
    WORKER_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    worker: Worker
    revision: int
    def __init__(self, worker: _Optional[_Union[Worker, _Mapping]] = ..., revision: _Optional[int] = ...) -> None: ...

class DeleteWorkerRequest(_message.Message):
    __slots__ = ("task_id", "expected_revision", "request_id", "reason")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    expected_revision: int
    request_id: str
    reason: str
    def __init__(self, task_id: _Optional[str] = ..., expected_revision: _Optional[int] = ..., request_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class DeleteWorkerResponse(_message.Message):
    __slots__ = ("worker", "revision")
    WORKER_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    worker: Worker
    revision: int
    def __init__(self, worker: _Optional[_Union[Worker, _Mapping]] = ..., revision: _Optional[int] = ...) -> None: ...

class Operation(_message.Message):
    __slots__ = ("create", "transition", "fail", "set_labels", "delete")
    CREATE_FIELD_NUMBER: _ClassVar[int]
    TRANSITION_FIELD_NUMBER: _ClassVar[int]
    FAIL_FIELD_NUMBER: _ClassVar[int]
    SET_LABELS_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    create: CreateWorkerRequest
    transition: TransitionRequest
    fail: FailWorkerRequest
    set_labels: SetLabelsRequest
    delete: DeleteWorkerRequest
    def __init__(self, create: _Optional[_Union[CreateWorkerRequest, _Mapping]] = ..., transition: _Optional[_Union[TransitionRequest, _Mapping]] = ..., fail: _Optional[_Union[FailWorkerRequest, _Mapping]] = ..., set_labels: _Optional[_Union[SetLabelsRequest, _Mapping]] = ..., delete: _Optional[_Union[DeleteWorkerRequest, _Mapping]] = ...) -> None: ...

class ApplyRequest(_message.Message):
    __slots__ = ("operations", "request_id")
    OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    operations: _containers.RepeatedCompositeFieldContainer[Operation]
    request_id: str
    def __init__(self, operations: _Optional[_Iterable[_Union[Operation, _Mapping]]] = ..., request_id: _Optional[str] = ...) -> None: ...

class OperationResult(_message.Message):
    __slots__ = ("worker", "revision")
    WORKER_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    worker: Worker
    revision: int
    def __init__(self, worker: _Optional[_Union[Worker, _Mapping]] = ..., revision: _Optional[int] = ...) -> None: ...

class ApplyResponse(_message.Message):
    __slots__ = ("results", "revision")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[OperationResult]
    revision: int
    def __init__(self, results: _Optional[_Iterable[_Union[OperationResult, _Mapping]]] = ..., revision: _Optional[int] = ...) -> None: ...
