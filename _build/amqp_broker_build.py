"""setuptools' build backend, which also asks for mypy when ``AMQP_BROKER_COMPILE=1`` (setup.py
then compiles the hot path with mypyc). A plain build needs setuptools alone, as before."""

import os

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F401,F403  (the rest of the backend, unchanged)


def _compiler() -> list[str]:
    return ["mypy>=1.11"] if os.environ.get("AMQP_BROKER_COMPILE") == "1" else []


def get_requires_for_build_wheel(config_settings=None):
    return _setuptools.get_requires_for_build_wheel(config_settings) + _compiler()


def get_requires_for_build_editable(config_settings=None):
    return _setuptools.get_requires_for_build_editable(config_settings) + _compiler()
