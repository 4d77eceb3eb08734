"""The client library's public surface: the blocking faces match the asyncio ones, and the
package exports exactly what its `__all__` names.

The blocking classes are facades over the asyncio ones, so a feature added to one side and
forgotten on the other is easy to miss (the blocking Heartbeater once had no `error`,
although the README promised it). These tests compare live objects, so attributes set in
`__init__` count as much as methods.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
import workerstate.client as package
from harness import unique
from workerstate.client import (
    AsyncHeartbeater,
    AsyncWatch,
    AsyncWorkerClient,
    Heartbeater,
    Watch,
    WorkerClient,
)
from workerstate.client import client as client_module
from workerstate.client import errors as errors_module
from workerstate.client import types as types_module

# What only the asyncio client has, and why. Nothing else may differ.
ASYNC_ONLY = {"stub": "the generated grpc.aio stub, for raw messages; it is asyncio-only"}
# Each asyncio protocol method and its blocking counterpart.
PROTOCOLS = {
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "__aiter__": "__iter__",
    "__anext__": "__next__",
}


def face(obj: object, protocols: Iterable[str]) -> dict[str, Any]:
    """The public names of a live object, and those of `protocols` it has."""
    names = [n for n in dir(obj) if not n.startswith("_")]
    names += [n for n in protocols if hasattr(obj, n)]
    return {n: getattr(obj, n) for n in names}


def assert_same_face(blocking: object, asynchronous: object) -> None:
    """The blocking object has every public name of the asyncio one (protocols translated)
    and nothing more, and each method takes the same parameters."""
    async_face = {
        PROTOCOLS.get(name, name): value
        for name, value in face(asynchronous, PROTOCOLS).items()
        if name not in ASYNC_ONLY
    }
    blocking_face = face(blocking, PROTOCOLS.values())
    assert sorted(blocking_face) == sorted(async_face)
    for name, value in async_face.items():
        assert inspect.ismethod(blocking_face[name]) == inspect.ismethod(value), name
        if inspect.ismethod(value):
            blocking_parameters = inspect.signature(blocking_face[name]).parameters
            assert blocking_parameters == inspect.signature(value).parameters, name


@pytest.fixture
def faces(shared_daemon) -> Iterator[dict[str, tuple[object, object]]]:
    """Live blocking and asyncio clients, watches and heartbeaters on one worker."""
    loop = asyncio.new_event_loop()

    async def make_async() -> tuple[AsyncWorkerClient, AsyncWatch, AsyncHeartbeater]:
        client = AsyncWorkerClient(shared_daemon.address)
        return client, client.watch(), client.heartbeater(unique("api"))

    with WorkerClient(shared_daemon.address) as client:
        async_client, async_watch, async_beats = loop.run_until_complete(make_async())
        watch = client.watch()
        yield {
            "client": (client, async_client),
            "watch": (watch, async_watch),
            "heartbeater": (client.heartbeater(unique("api")), async_beats),
        }
        watch.close()
        async_watch.close()
        loop.run_until_complete(async_client.close())
    loop.close()


@pytest.mark.parametrize("kind", ["client", "watch", "heartbeater"])
def test_the_blocking_face_matches_the_asyncio_one(faces, kind):
    blocking, asynchronous = faces[kind]
    assert_same_face(blocking, asynchronous)


def test_the_package_exports_exactly_its_all():
    exported = {
        name
        for name, value in vars(package).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert sorted(package.__all__) == sorted(set(package.__all__)), "duplicates in __all__"
    assert set(package.__all__) == exported
    for name in package.__all__:
        assert getattr(package, name) is not None


def test_every_public_class_and_exception_is_exported():
    for module in (client_module, errors_module, types_module):
        for name, value in vars(module).items():
            defined_here = inspect.isclass(value) and value.__module__ == module.__name__
            if defined_here and not name.startswith("_"):
                assert name in package.__all__, f"{module.__name__}.{name}"
    errors = {
        cls
        for cls in vars(errors_module).values()
        if inspect.isclass(cls) and issubclass(cls, package.WorkerStateError)
    }
    assert errors <= {getattr(package, n) for n in package.__all__}
    assert {Heartbeater, Watch} <= {getattr(package, n) for n in package.__all__}
