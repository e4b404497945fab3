"""Only the optional compiled build lives here; everything else is in pyproject.toml.

``AMQP_BROKER_COMPILE=1 pip install .`` compiles the hot-path modules listed in
amqp_broker/compiled.py with mypyc (needs mypy and a C compiler; see README, "Compiling the hot
path"). Without that variable the wheel is pure Python, as always, and needs neither.
"""

import ast
import os
from pathlib import Path

from setuptools import setup


def _hot_path_modules() -> list[str]:
    # Read, not imported: importing amqp_broker needs its dependencies, which a build lacks.
    tree = ast.parse(Path(__file__).with_name("amqp_broker").joinpath("compiled.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "MODULES":
            return list(ast.literal_eval(node.value))
    raise RuntimeError("amqp_broker/compiled.py has no MODULES")


ext_modules = []
if os.environ.get("AMQP_BROKER_COMPILE") == "1":
    from mypyc.build import mypycify

    # Type errors in the modules that stay interpreted are not the build's concern.
    # The runtime library all compiled modules share goes inside the package
    # (amqp_broker/_hot_path__mypyc), not at the top level where only the source tree finds it.
    ext_modules = mypycify(["--follow-imports=silent", *_hot_path_modules()], opt_level="3",
                           group_name="amqp_broker._hot_path")

setup(ext_modules=ext_modules)
