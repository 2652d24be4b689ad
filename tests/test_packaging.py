"""The distribution installs every package of the tree: pyproject.toml lists its packages by hand
(the tree's folders map onto tensorgrid.*), so a new folder missing from the list would import from
a source checkout and be absent from a wheel, the Docker image's included."""

import os
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_package_folder_is_in_the_distribution():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        setuptools = tomllib.load(f)["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    missing = []
    for package, folder in setuptools["package-dir"].items():
        for here, dirs, files in os.walk(os.path.join(ROOT, folder)):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            if "__init__.py" in files:
                rel = os.path.relpath(here, os.path.join(ROOT, folder))
                name = package if rel == "." else package + "." + rel.replace(os.sep, ".")
                if name not in listed:
                    missing.append(name)
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"
