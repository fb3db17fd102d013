"""Where S3 requests are retried: this one loop, and nowhere else.

botocore's own retries are off (``total_max_attempts=1``) and RetryingStorage leaves
errors of whole requests alone (they come out marked ``retried``), so nothing multiplies.
Every S3 request — put, get, head, delete, each listing page, and each request of a
multipart upload (create, every part, complete, abort) — is tried:

- once when the answer is permanent: 403, 404, 501 NotImplemented, any other 4xx;
- at most 3 times (waits of 0.5 s and 1 s) when it is transient: a 5xx reply (not 501),
  429, SlowDown, RequestTimeout, a timeout (a stall), a reset, a refused connection;
- at most 9 times over about a minute (waits of 1, 2, 4, 8, 10, 10, 10 and 10 s) once an
  endpoint that has answered before refuses or drops connections without an answer (a
  server restarting), if the policy waits out outages (``PATIENT``: runs, not checks).

A cancelled run does not wait to try again. A body that breaks while it is read is not a
request failure: RetryingStorage resumes it from the first byte not received.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    HTTPClientError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from backapp.storage.s3.errors import connection_reason, transient_reply

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """The waits (seconds) before each further try of a request: ``waits`` for transient
    failures, ``outage_waits`` once a reached endpoint stops answering (empty: ``waits``)."""

    waits: tuple[float, ...] = (0.5, 1.0)
    outage_waits: tuple[float, ...] = ()

    @property
    def tries(self) -> int:
        """Return the most tries a request gets for a transient failure."""
        return 1 + len(self.waits)

    @property
    def outage_tries(self) -> int:
        """Return the most tries a request gets while a reached endpoint is unreachable."""
        return 1 + len(self.outage_waits or self.waits)


ONCE = RetryPolicy(waits=())
STANDARD = RetryPolicy()
PATIENT = RetryPolicy(outage_waits=(1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0, 10.0))


class RequestRetry:
    """Makes S3 requests under a RetryPolicy; remembers whether the endpoint ever answered
    (one never reached — a wrong address — is not waited out as an outage)."""

    def __init__(
        self,
        policy: RetryPolicy,
        where: str,
        sleep: Callable[[float], Any] = time.sleep,
        cancelled: Callable[[], bool] | None = None,
    ) -> None:
        self.policy = policy
        self._where = where
        self._sleep = sleep  # a run's cancel-aware sleep wakes up on cancel
        self._cancelled = cancelled
        self.reached = False

    def __call__(self, request: Callable[[], T]) -> T:
        """Given an S3 request, make it and return its reply, trying again as the module
        docstring says. Raise the botocore error of the last try."""
        failures = 0
        outage = False
        while True:
            try:
                result = request()
                self.reached = True
                return result
            except ClientError as exc:
                self.reached = True  # an error reply is a reply
                error = exc.response.get("Error", {})
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                if not transient_reply(status, error.get("Code", "")):
                    raise
                last: Exception = exc
                reason = f"{error.get('Code') or status}"
            except (BotoConnectionError, HTTPClientError) as exc:
                timed_out = isinstance(exc, ReadTimeoutError | ConnectTimeoutError)
                outage = outage or (self.reached and not timed_out)
                last = exc
                reason = connection_reason(exc)
            failures += 1
            waits = (self.policy.outage_waits if outage else ()) or self.policy.waits
            if failures > len(waits) or (self._cancelled is not None and self._cancelled()):
                raise last
            delay = waits[failures - 1]
            log = logger.warning if outage else logger.info
            log("S3 at %s: %s; trying again in %.1fs", self._where, reason, delay)
            self._sleep(delay)
