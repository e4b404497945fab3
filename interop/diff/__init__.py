"""Differential testing: the same scenarios against our broker and a real RabbitMQ.

See ``harness`` (the scenario API), ``runner`` (``python -m interop.diff``) and
``known_differences``.
"""
