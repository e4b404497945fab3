"""``/api/amqp-broker/faults``: fault injection over HTTP (not a RabbitMQ endpoint: our own paths
live under ``/api/amqp-broker/``; see README "Fault injection"). Every call goes to
:class:`~amqp_broker.server.faults.Faults`; administrators only.

    GET    /api/amqp-broker/faults        every fault not yet released
    POST   /api/amqp-broker/faults        arm one: {"fault": "close_channel", "channel": 1, "code": 406,
                                          "on": "basic.publish", "after": 3} -> 201 and its record
    DELETE /api/amqp-broker/faults        release every fault
    GET    /api/amqp-broker/faults/{id}   one fault's record (state, seen, fired)
    DELETE /api/amqp-broker/faults/{id}   release one
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .http import Response

if TYPE_CHECKING:  # pragma: no cover
    from ..server.faults import Faults
    from .api import ManagementApi


def add_fault_routes(api: "ManagementApi", faults: "Faults") -> None:
    from .api import ADMIN, bad_request

    def arm(call: Any) -> Response:
        body = api._body(call)
        kind = body.pop("fault", None)
        if not isinstance(kind, str):
            raise bad_request("a fault needs its kind: {\"fault\": \"close_channel\", ...}")
        return Response.json(faults.arm(kind, **body), 201)

    def release_all(call: Any) -> Response:
        faults.release()
        return Response(204)

    def release(call: Any, fault: str) -> Response:
        faults.release(fault)
        return Response(204)

    api.router.add("/api/amqp-broker/faults", GET=(ADMIN, lambda call: faults.list()), POST=(ADMIN, arm),
                   DELETE=(ADMIN, release_all))
    api.router.add("/api/amqp-broker/faults/{fault}", GET=(ADMIN, lambda call, fault: faults.get(fault)),
                   DELETE=(ADMIN, release))
