"""Differences of our management API from RabbitMQ 3.10's that are deliberate and documented.

Keyed by (request label pattern, difference pattern), both fnmatch patterns; the difference is
"status", "key-missing:PATH", "key-extra:PATH", "value:PATH", "step" or "run" (see
diff.Difference). A listed difference is reported as KNOWN and does not fail the run.

Only intended, documented differences belong here; a missing or wrong feature is a bug to fix.
Example: ("read: GET nodes", "key-missing:[{node}].*"): "README: ... why".
"""

KNOWN_DIFFERENCES: dict[tuple[str, str], str] = {
}
