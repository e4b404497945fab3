"""Scenarios whose differences from RabbitMQ are deliberate and documented (README, "Known
differences from RabbitMQ"). They still run and are reported as KNOWN; they don't fail the run
(and are xfail(strict=False) in tests/differential).

Only documented, intended differences belong here. A scenario that differs because a feature is
missing or wrong is a bug to fix, not a known difference. When a listed scenario starts to match,
the runner reports it as KNOWN-PASS: take it off the list.
"""

KNOWN_DIFFERENCES: dict[str, str] = {
    "connection.start: product identification":
        "README: connection.start names this product (product, platform, copyright, "
        "information, cluster_name), not RabbitMQ/Erlang",
    "tune-ok frame_max out of range":
        "README: a tune-ok raising frame_max/channel_max (or frame_max below 4096) gets "
        "connection.close 530 NOT_ALLOWED with RabbitMQ's own negotiation text, so the client "
        "learns why; RabbitMQ 3.10 drops the socket silently after 3 s",
    "protocol header: legacy AMQP 0-8 / 0-9 headers":
        "README: only AMQP 0-9-1 is spoken; other protocol headers are answered with the 0-9-1 "
        "header and the socket is closed (spec 4.2.2); RabbitMQ 3.10 still speaks 0-8 and 0-9",
    "x-queue-type: quorum basics (get, consume, requeue)":
        "README: a message requeued on a quorum queue is served first, with x-delivery-count on "
        "every delivery; RabbitMQ 3.10 puts it last for a consumer that arrives afterwards and "
        "omits x-delivery-count on a consumer's first delivery",
}
