"""Packaging that pyproject.toml cannot declare: the top-level dashboards/ and notebooks/ ship
inside the package (workbench/dashboards, workbench/notebooks), so an installed wheel has them."""

from setuptools import find_packages, setup

SHIPPED = {"workbench.dashboards": "dashboards", "workbench.notebooks": "notebooks"}

setup(
    packages=[*find_packages(include=["workbench", "workbench.*"]), *SHIPPED],
    package_dir=SHIPPED,
    package_data={name: ["*.ipynb"] for name in SHIPPED},
)
