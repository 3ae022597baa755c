"""Typed errors of the Herald SDK."""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Type

__all__ = [
    "HeraldError",
    "HeraldTransportError",
    "HeraldTimeoutError",
    "InvalidRequestError",
    "PayloadTooLargeError",
    "IdempotencyKeyReusedError",
    "UnauthorizedError",
    "ForbiddenError",
    "NotFoundError",
    "RateLimitedError",
    "ServiceUnavailableError",
    "OutcomeUnknownError",
    "error_from_response",
]


class HeraldError(Exception):
    """An error answered by the hub, or a transport failure (``status == 0``).

    ``code`` is the hub's stable error code (``{"error": {"code", "message"}}``), or
    ``network_error`` / ``timeout`` when no answer arrived, or ``http_<status>`` when the answer
    was not Herald's JSON. ``retry_after`` is the ``Retry-After`` header in seconds, when sent.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        retry_after: Optional[float] = None,
        body: Any = None,
        idempotency_key: Optional[str] = None,
    ) -> None:
        super().__init__(f"{code}: {message}" if status == 0 else f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.body = body
        #: The idempotency key of the single publish that failed: resend with it to publish at most once.
        self.idempotency_key = idempotency_key
        #: For a failed ``publish_many``: each item's key, in order.
        self.idempotency_keys: Optional[Sequence[Optional[str]]] = None
        #: How many attempts were made (1 = no retry).
        self.attempts = 1


class HeraldTransportError(HeraldError):
    """No answer came from the hub (connection refused, reset, unreadable answer). ``status`` is 0."""


class HeraldTimeoutError(HeraldTransportError):
    """The request timed out (``code == "timeout"``)."""


class InvalidRequestError(HeraldError):
    """400, 404, 405, 413, 422: the hub refused the request as it is; resending it cannot help."""


class PayloadTooLargeError(InvalidRequestError):
    """413 ``payload_too_large`` / ``batch_too_large``."""


class IdempotencyKeyReusedError(InvalidRequestError):
    """422 ``idempotency_key_reused``: the key was used for a different event within the window."""


class NotFoundError(InvalidRequestError):
    """404 ``not_found``."""


class UnauthorizedError(HeraldError):
    """401: missing or wrong publisher key (or subscriber token)."""


class ForbiddenError(HeraldError):
    """403: the key's scope does not cover this target or endpoint (``forbidden``,
    ``identity_not_allowed``, ``origin_not_allowed``, ``channel_forbidden``...)."""


class RateLimitedError(HeraldError):
    """429 (``rate_limited``, ``user_connection_limit``...): nothing was done; see ``retry_after``."""


class ServiceUnavailableError(HeraldError):
    """503 ``engine_unavailable``, ``overloaded``, ``shutting_down``, ``too_many_connections``:
    nothing was sent, for certain; safe to retry (see ``retry_after``)."""


class OutcomeUnknownError(HeraldError):
    """A publish that may or may not have been published: ``503 outcome_unknown``, a timeout or a
    network error after the request may have reached the hub, or a 5xx answer. ``code`` says which.

    Resend it only with the same idempotency key (``idempotency_key``): the hub then publishes
    it at most once within its ``--idempotency-window``. Without a key a resend may deliver twice.
    """


_BY_STATUS: Dict[int, Type[HeraldError]] = {
    400: InvalidRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    405: InvalidRequestError,
    408: InvalidRequestError,
    413: PayloadTooLargeError,
    422: IdempotencyKeyReusedError,
    429: RateLimitedError,
}


def error_from_response(
    status: int,
    code: str,
    message: str,
    *,
    retry_after: Optional[float] = None,
    body: Any = None,
    idempotency_key: Optional[str] = None,
) -> HeraldError:
    """The typed error for an HTTP error answer."""
    cls: Type[HeraldError]
    if status == 503 and code == "outcome_unknown":
        cls = OutcomeUnknownError
    elif status == 503:
        cls = ServiceUnavailableError
    else:
        cls = _BY_STATUS.get(status, HeraldError)
    return cls(status, code, message, retry_after=retry_after, body=body, idempotency_key=idempotency_key)
