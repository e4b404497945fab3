"""The control CLI (``amqp-broker ctl``) and the RabbitMQ-named shims (``amqp-broker shims DIR``).

``cli`` parses rabbitmqctl's command line, ``commands`` runs each command over the broker's
control endpoint (``client``) and prints what rabbitmqctl prints (``format``); ``shims`` writes
``rabbitmq-server``, ``rabbitmqctl``, ``rabbitmq-diagnostics`` and ``rabbitmq-plugins`` wrappers
that tools and test fixtures written for RabbitMQ can run unchanged.
"""
