"""Packaging of expman-tornado.

``frontend_dist/`` lives at the top of the repository and is installed as the
package data folder ``expman_tornado/frontend_dist``; the server looks for it
there first and then beside the package (a source checkout).
"""

import glob
import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read_version():
    with open(os.path.join(HERE, "expman_tornado", "__init__.py")) as f:
        for line in f:
            if line.startswith("__version__"):
                return line.split("=")[1].strip().strip("\"'")
    raise RuntimeError("__version__ not found in expman_tornado/__init__.py")


def frontend_files():
    os.chdir(HERE)
    return [
        os.path.relpath(path, "frontend_dist")
        for path in glob.glob("frontend_dist/**/*", recursive=True)
        if os.path.isfile(path)
    ]


def etc_data_files():
    found = {}
    for path in glob.glob("etc/**/*", recursive=True):
        if os.path.isfile(path) and not os.path.basename(path).startswith("."):
            found.setdefault(os.path.dirname(path), []).append(path)
    return sorted(found.items())


with open(os.path.join(HERE, "README.md"), encoding="utf-8") as f:
    long_description = f.read()

setup(
    name="expman-tornado",
    version=read_version(),
    description="A Tornado server and dashboard for experiments written by the expman logger",
    long_description=long_description,
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["expman_tornado", "expman_tornado.*"]) + ["expman_tornado.frontend_dist"],
    package_dir={"expman_tornado.frontend_dist": "frontend_dist"},
    package_data={"expman_tornado.frontend_dist": frontend_files()},
    data_files=etc_data_files(),
    install_requires=[
        "tornado>=6.4",
        "pyarrow>=15",
        "polars>=1.0",
        "numpy",
        "orjson>=3.9",
        "PyYAML>=6",
        "traitlets>=5.9",
        "jupyter_core>=5",
        "pyinotify>=0.9.6; sys_platform == 'linux'",
        "pyasyncore; python_version >= '3.12'",
        "nbformat>=5.9",
        "jupyter_server>=2.10",
        "expman-rs>=1.3",
    ],
    extras_require={
        "test": [
            "pytest>=8,<10",
            "pytest-tornado>=0.8.1",
            "pytest-jupyter>=0.10",
            "pytest-timeout",
            "httpx",
            "httpx-sse",
            "requests",
            "schemathesis==4.32.5",
            "hypothesis",
            "playwright>=1.40",
            "build",
            "wheel",  # The wheel test builds without isolation, so bdist_wheel must be installed.
            # The extension tests run spawned notebooks in a python3 kernel, with and
            # without matplotlib.
            "nbclient>=0.10",
            "ipykernel>=6.5",
            "matplotlib",
            # A store on object storage: s3fs reads it, and moto's S3 server emulates S3.
            "s3fs>=2024.2",
            "moto[server]>=5",
        ],
        # Serving a store on object storage (s3://…). An extra, not a dependency:
        # s3fs brings botocore and aiohttp, which a local store does not need.
        "s3": ["s3fs>=2024.2"],
    },
    entry_points={"console_scripts": ["expman-tornado = expman_tornado.app:main"]},
    classifiers=[
        "Framework :: Jupyter",
        "Framework :: Tornado",
        "Programming Language :: Python :: 3",
    ],
)
