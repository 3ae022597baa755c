"""Herald's Python SDK: publish events to a Herald hub, call its admin API, read its streams.

>>> from herald_client import HeraldPublisher
>>> herald = HeraldPublisher("http://127.0.0.1:8080")
>>> herald.notify_user("alice", "Your order shipped", "order_update", {"orderId": 42})
PublishResult(id='5f3a9c01b2d4-17', delivered=1, replayed=False)
"""

__version__ = "0.1.0"

from ._core import message, new_idempotency_key  # noqa: E402
from ._errors import (  # noqa: E402
    ForbiddenError,
    HeraldError,
    HeraldTimeoutError,
    HeraldTransportError,
    IdempotencyKeyReusedError,
    InvalidRequestError,
    NotFoundError,
    OutcomeUnknownError,
    PayloadTooLargeError,
    RateLimitedError,
    ServiceUnavailableError,
    UnauthorizedError,
)
from ._models import BatchItemError, BatchItemResult, DisconnectResult, Event, HeraldStats, PublishResult  # noqa: E402
from ._publisher import AsyncHeraldPublisher, HeraldPublisher  # noqa: E402
from ._subscriber import AsyncHeraldSubscriber, HeraldSubscriber  # noqa: E402

__all__ = [
    "__version__",
    "HeraldPublisher",
    "AsyncHeraldPublisher",
    "HeraldSubscriber",
    "AsyncHeraldSubscriber",
    "PublishResult",
    "BatchItemError",
    "BatchItemResult",
    "DisconnectResult",
    "HeraldStats",
    "Event",
    "message",
    "new_idempotency_key",
    "HeraldError",
    "HeraldTransportError",
    "HeraldTimeoutError",
    "InvalidRequestError",
    "PayloadTooLargeError",
    "IdempotencyKeyReusedError",
    "NotFoundError",
    "UnauthorizedError",
    "ForbiddenError",
    "RateLimitedError",
    "ServiceUnavailableError",
    "OutcomeUnknownError",
]
