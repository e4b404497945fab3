"""setuptools' build backend, which also asks for mypy when ``AMQP_BROKER_COMPILE=1`` (setup.py
then compiles the hot path with mypyc). A plain build needs setuptools alone, as before."""

import os

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F401,F403  (the rest of the backend, unchanged)

# setuptools finds its own requirements by running setup.py, which then needs mypyc already:
# asked for mypy, it answers with that alone (setup.py has no setup_requires of its own).
_COMPILER = ["mypy>=1.11"]


def _compiling() -> bool:
    return os.environ.get("AMQP_BROKER_COMPILE") == "1"


def get_requires_for_build_wheel(config_settings=None):
    if _compiling():
        return list(_COMPILER)
    return _setuptools.get_requires_for_build_wheel(config_settings)


def get_requires_for_build_editable(config_settings=None):
    if _compiling():
        return list(_COMPILER)
    return _setuptools.get_requires_for_build_editable(config_settings)
