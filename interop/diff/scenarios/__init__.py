"""Scenario modules; importing this package registers every scenario.

Core (expected to match RabbitMQ today): declare, exclusive, errors, consume, publish, routing.
RabbitMQ extensions (tagged ``ext``): ext_alternate, ext_ttl, ext_dlx, ext_maxlen, ext_priority,
ext_misc.
"""

from . import consume, declare, errors, exclusive, publish, routing  # noqa: F401
from . import ext_alternate, ext_dlx, ext_maxlen, ext_misc, ext_priority, ext_ttl  # noqa: F401
