"""A storage that injects failures into a real one: the bad day, on demand.

``FaultStorage(inner)`` behaves exactly like ``inner`` until a fault is injected
with ``inject``; a fault fires on the n-th matching call (``after`` calls are let
through first) and then on every later one unless ``once`` is set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from backapp.storage import ObjectInfo, ObjectWriter, Storage, TransferCallback


@dataclass
class Fault:
    op: str  # write | commit | put | get | head | list | delete | abort
    key_contains: str
    after: int
    error: BaseException | None
    action: Callable[..., Any] | None
    once: bool
    seen: int = 0
    fired: int = 0

    def hit(self, op: str, key: str) -> bool:
        if op != self.op or self.key_contains not in key:
            return False
        self.seen += 1
        if self.seen <= self.after or (self.once and self.fired):
            return False
        self.fired += 1
        return True


class FaultStorage:
    """Wraps a Storage; injected faults raise (or act) where they match."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.faults: list[Fault] = []

    def inject(
        self,
        op: str,
        *,
        key_contains: str = "",
        after: int = 0,
        error: BaseException | None = None,
        action: Callable[..., Any] | None = None,
        once: bool = False,
    ) -> Fault:
        fault = Fault(op, key_contains, after, error, action, once)
        self.faults.append(fault)
        return fault

    def _fire(self, op: str, key: str, *args: Any) -> tuple[bool, Any]:
        for fault in self.faults:
            if fault.hit(op, key):
                if fault.action is not None:
                    return True, fault.action(*args)
                assert fault.error is not None
                raise fault.error
        return False, None

    @property
    def description(self) -> str:
        return self.inner.description

    def open_writer(self, key: str, on_transfer: TransferCallback | None = None) -> ObjectWriter:
        return _FaultWriter(self, key, self.inner.open_writer(key, on_transfer))

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        acted, value = self._fire("put", key, self.inner, key, data)
        if acted:
            return value  # type: ignore[no-any-return]
        return self.inner.put_bytes(key, data)

    def get(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        acted, value = self._fire("get", key, self.inner, key, start, end)
        if acted:
            return value  # type: ignore[no-any-return]
        return self.inner.get(key, start, end)

    def get_bytes(self, key: str) -> bytes:
        return b"".join(self.get(key))

    def head(self, key: str) -> ObjectInfo | None:
        acted, value = self._fire("head", key, self.inner, key)
        if acted:
            return value  # type: ignore[no-any-return]
        return self.inner.head(key)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        self._fire("list", prefix)
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self._fire("delete", key)
        self.inner.delete(key)

    def abort_incomplete(self, prefix: str) -> int:
        self._fire("abort", prefix)
        return self.inner.abort_incomplete(prefix)

    def check(self) -> None:
        self.inner.check()


class _FaultWriter:
    def __init__(self, owner: FaultStorage, key: str, inner: ObjectWriter) -> None:
        self.owner = owner
        self.key = key
        self.inner = inner

    def write(self, data: bytes | bytearray | memoryview) -> None:
        acted, _ = self.owner._fire("write", self.key, self.inner, data)
        if not acted:
            self.inner.write(data)

    def commit(self) -> ObjectInfo:
        acted, value = self.owner._fire("commit", self.key, self.inner)
        if acted:
            return value  # type: ignore[no-any-return]
        return self.inner.commit()

    def abort(self) -> None:
        self.inner.abort()
