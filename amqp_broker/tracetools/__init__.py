"""``amqp-broker trace show|pcap FILE``: read the frame traces the broker writes (server/trace.py).

The tools read the file alone: no broker is needed, and a trace can be looked at on another
machine than the one it was made on.
"""
