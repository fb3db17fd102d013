"""One transaction per read-only request (GET, HEAD, OPTIONS), for the API and the pages:
authentication hands its reads over to the route, and neither takes SQLite's write lock."""

from __future__ import annotations

import asyncio
import weakref

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from backapp.services.context import AppContext

READ_ONLY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class RequestTransactions:
    """ASGI middleware: the ``ctx.db.session()`` blocks of a read-only request share one
    reader transaction (see ``Database.request``); other requests keep a transaction per
    block, each a writer unless it says otherwise."""

    def __init__(self, app: ASGIApp, ctx: AppContext) -> None:
        self.app = app
        self.ctx = ctx
        # Requests wait here, in the event loop, for one of the database's request slots:
        # never in a worker thread, which the requests holding them need to finish. One
        # semaphore per loop (a server has one; test clients start one each).
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]
        self._slots = weakref.WeakKeyDictionary()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in READ_ONLY_METHODS:
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        slots = self._slots.get(loop)
        if slots is None:
            slots = self._slots[loop] = asyncio.Semaphore(self.ctx.db.request_slots)
        await slots.acquire()

        def release() -> None:  # called from a worker thread, when the transaction ends
            loop.call_soon_threadsafe(slots.release)

        with self.ctx.db.request(read_only=True, release=release) as transaction:
            try:
                await self.app(scope, receive, send)
            except BaseException:
                if transaction.open:
                    await run_in_threadpool(transaction.end, commit=False)
                raise
            if transaction.open:  # handed over by authentication, no block came to end it
                await run_in_threadpool(transaction.end)
