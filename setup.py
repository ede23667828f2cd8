from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext


class BuildFromScratch(build_ext):
    """
    Builds each extension anew. pip builds a local directory in place, so a
    module left in build/ by an earlier build would otherwise be packaged
    even when this build of the optional extension fails (no compiler).
    """

    def build_extension(self, ext: Extension) -> None:
        Path(self.get_ext_fullpath(ext.name)).unlink(missing_ok=True)
        super().build_extension(ext)


setup(
    name="ssedemo",
    version="0.1.0",
    description="A Server-Sent Events server on Twisted and Klein, as a twistd plugin.",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11",
    # twisted.plugins is a namespace shared with Twisted: no __init__.py, so
    # it must be listed by hand.
    packages=[
        *find_packages(include=["sse_twisted", "sse_twisted.*"]),
        "twisted.plugins",
    ],
    # sse_twisted/static links to the top-level static/ directory; building
    # a wheel copies the files in, so both install modes serve the page.
    package_data={
        "sse_twisted": ["static/*", "py.typed", "_fanout.pyi"],
        "sse_twisted.transport": ["_head.pyi"],
        "twisted.plugins": ["ssedemo_plugin.py", "ssedemo_endpoints.py"],
    },
    # The compiled send loop of the fan-out and the compiled request-head
    # parser (limited API: one build serves every Python 3.11+). Optional:
    # without a C compiler, ssedemo installs and does the same in Python.
    ext_modules=[
        Extension(
            f"sse_twisted.{path.removesuffix('.c').replace('/', '.')}",
            [f"sse_twisted/{path}"],
            define_macros=[("Py_LIMITED_API", "0x030B0000")],
            py_limited_api=True,
            optional=True,
        )
        for path in ("_fanout.c", "transport/_head.c")
    ],
    cmdclass={"build_ext": BuildFromScratch},
    options={"bdist_wheel": {"py_limited_api": "cp311"}},
    install_requires=[
        "twisted[tls,http2]>=26.10",
        "klein>=24.8",
        "hiredis>=3.0",
        "prometheus_client>=0.20",
        "pyjwt[crypto]>=2.8",
        "treq>=26.7",
    ],
    # The other end, for the terminal (the server itself is twistd ssedemo).
    entry_points={"console_scripts": ["ssedemo = sse_twisted.cli.main:main"]},
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-twisted>=1.14",
            "pytest-cov>=5",
            "hypothesis>=6.100",
            "playwright>=1.45",
            "ruff>=0.6",
            "mypy>=1.11",
            "mypy-zope>=1.0",
            "import-linter>=2.1",
            "pydoctor>=24.11",
        ],
    },
)
