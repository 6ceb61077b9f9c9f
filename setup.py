"""Package discovery (everything else is in pyproject.toml).

Every folder with an ``__init__.py`` under ``audiobench/`` is a package; ``methods/`` and ``metrics/``
(at the top level of the repository, for readers) install as ``audiobench.methods`` and
``audiobench.metrics``. A new package needs no edit here: ``tests/harness/test_packaging.py`` builds
the wheel and runs it from outside the checkout.
"""

from setuptools import find_packages, setup

MAPPED = {"audiobench.methods": "methods", "audiobench.metrics": "metrics"}


def _packages() -> tuple[list[str], dict[str, str]]:
    packages = find_packages(include=["audiobench", "audiobench.*"])
    package_dir = {"audiobench": "audiobench"}
    for name in packages:
        package_dir[name] = name.replace(".", "/")
    for name, folder in MAPPED.items():
        for sub in ["", *(f".{p}" for p in find_packages(folder))]:
            packages.append(name + sub)
            package_dir[name + sub] = folder + sub.replace(".", "/")
    return sorted(packages), package_dir


PACKAGES, PACKAGE_DIR = _packages()
setup(packages=PACKAGES, package_dir=PACKAGE_DIR)
