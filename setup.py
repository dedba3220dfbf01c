"""Packaging: ``pip install .`` gives the ``ddns`` command.

The top-level templates/, zones-repo/ and hooks/ directories ship inside the
package as ddns/_data/..., where ``ddns.resource_dir`` finds them.
"""
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

DATA_DIRS = ("templates", "zones-repo", "hooks")


class BuildWithData(build_py):
    """Copy the shared data directories into the built package."""

    def run(self):
        super().run()
        import shutil

        for name in DATA_DIRS:
            target = Path(self.build_lib) / "ddns" / "_data" / name
            shutil.copytree(name, target, dirs_exist_ok=True)


setup(
    name="ddns",
    version="0.1.0",
    description="Dynamic DNS where every change is a Git commit and BIND serves the result",
    long_description=Path("README.md").read_text() if Path("README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["ddns", "ddns.*"]),
    install_requires=[
        "bottle>=0.12",
        "jinja2>=3.1",
        "prometheus-client>=0.17",  # /metrics: the text format, counters and histograms of a per-service registry
        "gitpython>=3.1",
        "bcrypt>=4",
        "python-keycloak>=4",
        "dnspython>=2.9",  # the listener relies on keyring=False and the MAC checked before the time
        "idna>=3.4",
        "h11>=0.14",
        "gssapi>=1.8",  # GSS-TSIG: the TKEY acceptor and the MICs of Kerberos-signed updates
        "pygit2>=1.15",  # the service's commits in process (libgit2): no git process on the update path
        "psycopg[binary]>=3.2",  # the store on PostgreSQL (store.url); binary: no libpq build on the host
    ],
    extras_require={"test": ["pytest>=8", "requests>=2.28", "playwright>=1.40", "hypothesis>=6.100", "pyyaml>=6"]},
    entry_points={"console_scripts": ["ddns = ddns.cli:main"]},
    cmdclass={"build_py": BuildWithData},
)
