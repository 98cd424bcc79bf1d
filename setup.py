"""Installs the three top-level folders under one namespace.

``gateway/``, ``schema/`` and ``upstreams/`` become ``tokengate.gateway``,
``tokengate.schema`` and ``tokengate.upstreams``: nothing of ours lands at the top of
site-packages, where ``schema`` (a PyPI package) or ``gateway`` would shadow or be shadowed.
Everything else about the package is in pyproject.toml.
"""

from setuptools import find_packages, setup

FOLDERS = ("gateway", "schema", "upstreams")

setup(
    packages=[
        f"tokengate.{package}"
        for package in find_packages(include=[p for f in FOLDERS for p in (f, f"{f}.*")])
    ],
    package_dir={f"tokengate.{folder}": folder for folder in FOLDERS},
)
