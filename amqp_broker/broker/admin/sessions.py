"""Admin's connections, channels and consumers, and closing connections."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from ..broker import Broker
    from ..channel import Channel
    from ..session import Session

from .base import DEFAULT_CLOSE_REASON, _json, _not_found, _port

#: What a TLS connection reports of its TLS session (RabbitMQ's connection keys), from the server.
TLS_KEYS = ("ssl_protocol", "ssl_cipher", "ssl_key_exchange", "ssl_hash", "peer_cert_subject",
            "peer_cert_issuer", "peer_cert_validity")


class SessionsAdmin:
    """Admin's connections, channels and consumers, and closing connections."""

    broker: "Broker"

    # -- connections, channels, consumers ---------------------------------------------------------

    def connections(self, vhost: str | None = None) -> list[dict]:
        """Every open connection (after connection.open), oldest first."""
        sessions = sorted(self.broker.sessions, key=lambda s: (s.connected_at, s.name))
        return [self._connection_info(s) for s in sessions if vhost is None or s.vhost.name == vhost]

    def connection(self, name: str) -> dict:
        """One connection, by its name (``peer -> local``)."""
        return self._connection_info(self._session(name))

    def _session(self, name: str) -> "Session":
        for session in self.broker.sessions:
            if session.name == name:
                return session
        raise _not_found(f"connection '{name}'")

    @staticmethod
    def _connection_info(session: "Session") -> dict:
        peer_host, _, peer_port = session.peer.rpartition(":")
        details = session.details
        host, _, port = str(details.get("local", "")).rpartition(":")
        return {
            "name": session.name,
            "user": session.user,
            "vhost": session.vhost.name,
            "peer_host": peer_host,
            "peer_port": int(peer_port) if peer_port.isdigit() else None,
            "host": host,
            "port": int(port) if port.isdigit() else None,
            "channels": len(session.channels),
            "client_properties": _json(session.client_properties),
            "connected_at": session.connected_at,
            "state": "running",
            "type": "network",
            "protocol": details.get("protocol", "AMQP 0-9-1"),
            "auth_mechanism": details.get("auth_mechanism", ""),
            "frame_max": details.get("frame_max", 0),
            "channel_max": details.get("channel_max", 0),
            "timeout": details.get("timeout", 0),
            "ssl": details.get("ssl", False),
            **{key: details[key] for key in TLS_KEYS if key in details},
            **({"strict_violations": dict(details["strict_violations"])}
               if "strict_violations" in details else {}),
        }

    def close_connection(self, name: str, reason: str = DEFAULT_CLOSE_REASON) -> None:
        """Close a connection with 320 CONNECTION_FORCED and ``reason``, as RabbitMQ's
        management API and ``rabbitmqctl close_connection`` do."""
        self._close(self._session(name), reason)

    def close_all_connections(self, reason: str = DEFAULT_CLOSE_REASON, vhost: str | None = None) -> int:
        """Close every connection (of one vhost); returns how many."""
        sessions = [s for s in self.broker.sessions if vhost is None or s.vhost.name == vhost]
        for session in sessions:
            self._close(session, reason)
        return len(sessions)

    @staticmethod
    def _close(session: "Session", reason: str) -> None:
        text = f"CONNECTION_FORCED - {reason}"
        if session.closer is not None:
            session.closer(text)
        else:
            session.close()

    def channels(self, vhost: str | None = None) -> list[dict]:
        """Every open channel, by connection then number."""
        rows = []
        for session in sorted(self.broker.sessions, key=lambda s: (s.connected_at, s.name)):
            if vhost is not None and session.vhost.name != vhost:
                continue
            for number in sorted(session.channels):
                rows.append(self._channel_info(session, session.channels[number]))
        return rows

    def _channel_info(self, session: "Session", channel: "Channel") -> dict:
        return {
            "name": f"{session.name} ({channel.number})",
            "number": channel.number,
            "user": session.user,
            "vhost": session.vhost.name,
            "connection_details": {"name": session.name, "peer_host": session.peer.rpartition(":")[0],
                                   "peer_port": _port(session.peer)},
            "consumer_count": len(channel.consumers),
            "messages_unacknowledged": len(channel.unacked),
            "messages_unconfirmed": len(channel.confirm_backlog),
            "prefetch_count": channel.prefetch_count,
            "global_prefetch_count": channel.global_prefetch,
            "confirm": channel.confirm_mode,
            "transactional": channel.tx is not None,
            # Staged in an open transaction: publishes, and deliveries acknowledged.
            "messages_uncommitted": sum(1 for action in channel.tx or () if action[0] == "publish"),
            "acks_uncommitted": sum(len(action[1]) for action in channel.tx or () if action[0] == "ack"),
            "state": "running",
            "message_stats": self._with_rates(("channel", session.name, channel.number),
                                              channel.message_stats()),
        }

    def consumers(self, vhost: str | None = None) -> list[dict]:
        """Every consumer, by queue then tag."""
        rows = []
        for v in sorted(self._vhosts(vhost), key=lambda v: v.name):
            for name in sorted(v.queues):
                queue = v.queues[name]
                for consumer in queue.all_consumers():
                    session = consumer.channel.session
                    rows.append({
                        "consumer_tag": consumer.tag,
                        "queue": {"name": queue.name, "vhost": v.name},
                        "channel_details": {
                            "name": f"{session.name} ({consumer.channel.number})",
                            "number": consumer.channel.number,
                            "connection_name": session.name,
                            "peer_host": session.peer.rpartition(":")[0],
                            "peer_port": _port(session.peer),
                            "user": session.user,
                        },
                        "ack_required": not consumer.no_ack,
                        "exclusive": consumer.exclusive,
                        "prefetch_count": consumer.prefetch,
                        "active": consumer in queue.consumers,
                        "activity_status": "up" if consumer in queue.consumers else "waiting",
                        "arguments": _json(consumer.arguments or {}),
                    })
        return rows

