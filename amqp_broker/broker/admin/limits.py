"""Admin's vhost and user limits (broker/limits.py): the one way they are read and set.

Listings are RabbitMQ's management API rows: ``{"vhost": name, "value": {...}}`` and
``{"user": name, "value": {...}}``. Refusals carry RabbitMQ's reasons: a vhost limit's
validation error is wrapped in "Validation failed" as rabbit_runtime_parameters words it, a
user limit's is bare, as rabbit_auth_backend_internal gives it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..limits import USER_LIMITS, VHOST_LIMITS, LimitError, validate
from .base import AdminError, _not_found

if TYPE_CHECKING:  # pragma: no cover
    from ..auth import User
    from ..broker import Broker
    from ..vhost import VHost


def _vhost_value(limits: dict[str, int]) -> Any:
    # An Erlang proplist emptied key by key is [], and RabbitMQ shows it so.
    return dict(limits) if limits else []


class LimitsAdmin:
    """Admin's vhost limits and user limits."""

    broker: "Broker"

    # -- vhost limits ---------------------------------------------------------------------------

    def _limits_vhost(self, name: str) -> "VHost":
        vhost = self.broker.vhosts.get(name)
        if vhost is None:
            raise _not_found(f"vhost '{name}'")
        return vhost

    def vhost_limits(self, vhost: str | None = None) -> list[dict]:
        """Every vhost's limits (those with a limits parameter, even an emptied one), or one
        vhost's (nothing when it has none in force)."""
        if vhost is not None:
            limits = self._limits_vhost(vhost).limits
            return [{"vhost": vhost, "value": dict(limits)}] if limits else []
        return [{"vhost": name, "value": _vhost_value(v.limits)}
                for name, v in sorted(self.broker.vhosts.items()) if v.limits is not None]

    def _vhost_limits_changed(self, vhost: "VHost", limits: dict[str, int] | None) -> None:
        vhost.limits = limits
        self.broker.save_vhost(vhost.name)

    def set_vhost_limits(self, vhost: str, limits: dict) -> None:
        """Replace a vhost's limits with ``limits`` ({"max-connections": n, "max-queues": n};
        -1 for none), as ``rabbitmqctl set_vhost_limits``."""
        target = self._limits_vhost(vhost)
        try:
            checked = validate(VHOST_LIMITS, "limits", limits)
        except LimitError as exc:
            raise AdminError("bad_request", f"Validation failed\n\n{exc}\n") from None
        self._vhost_limits_changed(target, checked)

    def set_vhost_limit(self, vhost: str, name: str, value: Any) -> None:
        """Set one of a vhost's limits, keeping the others (PUT /api/vhost-limits/v/name)."""
        target = self._limits_vhost(vhost)
        rest = {k: v for k, v in (target.limits or {}).items() if k != name}
        try:
            validate(VHOST_LIMITS, "limits", {name: value, **rest})
        except LimitError as exc:
            raise AdminError("bad_request", f"Validation failed\n\n{exc}\n") from None
        self._vhost_limits_changed(target, {name: value, **rest})  # the newest first, as RabbitMQ

    def clear_vhost_limit(self, vhost: str, name: str) -> None:
        """Remove one of a vhost's limits (DELETE /api/vhost-limits/v/name); none set is fine."""
        target = self._limits_vhost(vhost)
        self._vhost_limits_changed(target, {k: v for k, v in (target.limits or {}).items() if k != name})

    def clear_vhost_limits(self, vhost: str) -> None:
        """Remove all of a vhost's limits (``rabbitmqctl clear_vhost_limits``); not_found
        "Parameter does not exist" when it has none to remove."""
        target = self.broker.vhosts.get(vhost)
        if target is None or target.limits is None:
            raise AdminError("not_found", "Parameter does not exist")
        self._vhost_limits_changed(target, None)

    # -- user limits ----------------------------------------------------------------------------

    def _limits_user(self, name: str) -> "User":
        user = self.broker.users.users.get(name)
        if user is None:
            raise _not_found(f"user '{name}'")
        return user

    def user_limits(self, user: str | None = None) -> list[dict]:
        """Every user's limits (users with none left out), or one user's."""
        if user is not None:
            limits = self._limits_user(user).limits
            return [{"user": user, "value": dict(limits)}] if limits else []
        return [{"user": name, "value": dict(u.limits)}
                for name, u in sorted(self.broker.users.users.items()) if u.limits]

    def set_user_limits(self, user: str, limits: dict) -> None:
        """Merge ``limits`` ({"max-connections": n, "max-channels": n}; -1 for none) into a
        user's, as ``rabbitmqctl set_user_limits`` does."""
        target = self._limits_user(user)
        try:
            checked = validate(USER_LIMITS, "user-limits", limits)
        except LimitError as exc:
            raise AdminError("bad_request", str(exc)) from None
        merged = {**target.limits, **checked}
        target.limits = {k: merged[k] for k in sorted(merged)}
        self.broker.save_user(user)

    def clear_user_limits(self, user: str, name: str = "all") -> None:
        """Remove one of a user's limits, or every one with ``all``; an unknown name is fine."""
        target = self._limits_user(user)
        target.limits = {} if name == "all" else {k: v for k, v in target.limits.items() if k != name}
        self.broker.save_user(user)
