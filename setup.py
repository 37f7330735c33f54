"""The package list, which pyproject.toml cannot compute: every package under qcsbench/, plus
the top-level configs/ folder installed as qcsbench.configs (the mapping and the YAML files
are declared in pyproject.toml), so the installed ``qcsbench`` command finds its configs."""
from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["qcsbench", "qcsbench.*"]), "qcsbench.configs"])
