"""Sans-IO AMQP 0-9-1: framing, codec, content assembly and connection state. No sockets here."""
