"""The trio server: sockets, tasks and timers around the sans-IO protocol layer."""

from .listener import BrokerServer, run_broker

__all__ = ["BrokerServer", "run_broker"]
