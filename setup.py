"""Packaging shim: maps the top-level ``search_spaces/`` and ``models/`` folders into the wheel as
``recommender._spaces`` and ``recommender._models`` so an installed copy finds its knob spaces and the
shipped surrogate from any working directory. Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["recommender", "recommender.*"]) + ["recommender._spaces", "recommender._models"],
    package_dir={"recommender._spaces": "search_spaces", "recommender._models": "models"},
    package_data={
        "recommender": ["py.typed", "data/workloads/*.csv.gz", "catalog/*.yaml", "catalog/models/*.json"],
        "recommender._spaces": ["*.yaml"],
        "recommender._models": ["*.skops", "*.json", "*.md"],
    },
)
