"""Build step that ships the repository's `schemas/` and `configs/` inside the wheel.

They stay at the top of the repository (the source of truth, read there in a source checkout);
the build copies them to ``exvad_ray/_data/`` in the wheel, where `exvad_ray.resources` finds them
in an installed package. Everything else is in pyproject.toml.
"""

import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
DATA_DIRS = ("schemas", "configs")


class BuildWithData(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads the checkout's folders
            return
        for name in DATA_DIRS:
            src = os.path.join(HERE, name)
            if not os.path.isdir(src):
                raise FileNotFoundError(f"{src} missing: cannot build a wheel without it")
            dst = os.path.join(self.build_lib, "exvad_ray", "_data", name)
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildWithData})
