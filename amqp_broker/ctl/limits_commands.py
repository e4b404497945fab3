"""rabbitmqctl's vhost and user limit commands (set/clear/list_vhost_limits, set/clear/list_user_limits),
with rabbitmqctl 3.10.8's banners, output and exit codes (tests/security compares them)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from . import format as fmt
from .client import RemoteError
from .commands import EX_DATAERR, EX_UNAVAILABLE, Context, CtlError, arguments, command


def _limits_json(value: Any) -> str:
    """Limits as rabbitmqctl prints them: compact JSON, in the order the broker keeps them."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _definition(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError:
        raise CtlError(EX_UNAVAILABLE, "JSON decoding error. Reason: badarg") from None
    if not isinstance(value, dict):
        raise CtlError(EX_UNAVAILABLE, f"JSON decoding error. Reason: {text} is not a JSON object")
    return value


def _no_vhost(vhost: str) -> CtlError:
    return CtlError(EX_DATAERR, f"Virtual host '{vhost}' does not exist", bare=True)


def _no_user(user: str) -> CtlError:
    return CtlError(EX_UNAVAILABLE, f"{{:no_such_user, {fmt.erlang_string(user)}}}")


@command("set_vhost_limits", "Sets virtual host limits", "Virtual hosts",
         "set_vhost_limits [--vhost <vhost>] <definition>")
@arguments(lambda p: p.add_argument(
    "definition", help='limits as a JSON object: {"max-connections": n, "max-queues": n} (-1: no limit)'))
def set_vhost_limits(ctx: Context, ns: argparse.Namespace) -> None:
    ctx.banner(f'Setting vhost limits to "{ns.definition}" for vhost "{ctx.vhost}" ...')
    limits = _definition(ns.definition)
    try:
        ctx.call("set_vhost_limits", vhost=ctx.vhost, limits=limits)
    except RemoteError as exc:
        if exc.kind == "not_found":
            raise _no_vhost(ctx.vhost) from None
        raise CtlError(EX_UNAVAILABLE, exc.reason.rstrip("\n") + "\n") from None
    ctx.done()


@command("clear_vhost_limits", "Clears virtual host limits", "Virtual hosts",
         "clear_vhost_limits [--vhost <vhost>]")
def clear_vhost_limits(ctx: Context, ns: argparse.Namespace) -> None:
    ctx.banner(f'Clearing vhost "{ctx.vhost}" limits ...')
    try:
        ctx.call("clear_vhost_limits", vhost=ctx.vhost)
    except RemoteError as exc:
        raise CtlError(EX_UNAVAILABLE, exc.reason) from None
    ctx.done()


@command("list_vhost_limits", "Displays configured virtual host limits", "Virtual hosts",
         "list_vhost_limits [--vhost <vhost>] [--global] [--no-table-headers]")
@arguments(lambda p: p.add_argument("--global", dest="all_vhosts", action="store_true",
                                    help="list the limits of every virtual host"))
def list_vhost_limits(ctx: Context, ns: argparse.Namespace) -> None:
    if ns.all_vhosts:
        ctx.banner("Listing limits for all vhosts ...")
        rows = [[r["vhost"], _limits_json(r["value"])] for r in ctx.call("vhost_limits")]
        ctx.rows(("vhost", "limits"), rows, streamed=False)
        return
    ctx.banner(f'Listing limits for vhost "{ctx.vhost}" ...')
    try:
        rows = ctx.call("vhost_limits", vhost=ctx.vhost)
    except RemoteError as exc:
        if exc.kind == "not_found":
            raise _no_vhost(ctx.vhost) from None
        raise
    text = _limits_json(rows[0]["value"]) if rows else ""
    if ctx.json:  # rabbitmqctl's JSON formatter wraps the limits' JSON text
        fmt.write_json(ctx.out, {"node": ctx.node, "result": "ok", "value": text})
    else:
        ctx.result(text)


@command("set_user_limits", "Sets user limits", "Users", "set_user_limits <username> <definition>")
@arguments(lambda p: (p.add_argument("username", help="user name"),
                      p.add_argument("definition", help='limits as a JSON object: {"max-connections": n, '
                                                        '"max-channels": n} (-1: no limit)')))
def set_user_limits(ctx: Context, ns: argparse.Namespace) -> None:
    ctx.banner(f'Setting user limits to "{ns.definition}" for user "{ns.username}" ...')
    limits = _definition(ns.definition)
    try:
        ctx.call("set_user_limits", user=ns.username, limits=limits)
    except RemoteError as exc:
        if exc.kind == "not_found":
            raise _no_user(ns.username) from None
        raise CtlError(EX_UNAVAILABLE, exc.reason) from None
    ctx.done()


@command("clear_user_limits", "Clears user connection/channel limits", "Users",
         "clear_user_limits <username> <limit_name> | all")
@arguments(lambda p: (p.add_argument("username", help="user name"),
                      p.add_argument("limit_name", help="max-connections, max-channels, or all")))
def clear_user_limits(ctx: Context, ns: argparse.Namespace) -> None:
    what = "all limits" if ns.limit_name == "all" else f'"{ns.limit_name}" limit'
    ctx.banner(f'Clearing {what} for user "{ns.username}" ...')
    try:
        ctx.call("clear_user_limits", user=ns.username, name=ns.limit_name)
    except RemoteError as exc:
        if exc.kind == "not_found":
            raise _no_user(ns.username) from None
        raise
    ctx.done()


@command("list_user_limits", "Displays configured user limits", "Users",
         "list_user_limits [--user <username>] [--global]")
@arguments(lambda p: (p.add_argument("--user", default="guest", help="user name (default: guest)"),
                      p.add_argument("--global", dest="all_users", action="store_true",
                                     help="list the limits of every user")))
def list_user_limits(ctx: Context, ns: argparse.Namespace) -> None:
    if ns.all_users:
        ctx.banner("Listing limits for all users ...")
        rows = [[r["user"], _limits_json(r["value"])] for r in ctx.call("user_limits")]
        ctx.rows(("user", "limits"), rows, streamed=False)
        return
    ctx.banner(f'Listing limits for user "{ns.user}" ...')
    try:
        rows = ctx.call("user_limits", user=ns.user)
    except RemoteError as exc:
        if exc.kind == "not_found":
            raise _no_user(ns.user) from None
        raise
    text = _limits_json(rows[0]["value"] if rows else {})
    if ctx.json:  # unlike list_vhost_limits, a "message" (rabbitmqctl's formatting)
        fmt.write_json(ctx.out, {"message": text})
    else:
        ctx.result(text)
