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
}
