"""The RabbitMQ tutorials 1-6 (interop/tutorials), written against pika, run against our broker."""

import pytest

from interop.tutorials import TUTORIALS


@pytest.mark.parametrize("name,run", TUTORIALS, ids=[name for name, _ in TUTORIALS])
def test_tutorial(broker, name, run):
    run("127.0.0.1", broker.port)
