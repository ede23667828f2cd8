from pathlib import Path

from setuptools import setup

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
    packages=["sse_twisted", "twisted.plugins"],
    # sse_twisted/static links to the top-level static/ directory; building
    # a wheel copies the files in, so both install modes serve the page.
    package_data={
        "sse_twisted": ["static/*", "py.typed"],
        "twisted.plugins": ["ssedemo_plugin.py", "ssedemo_endpoints.py"],
    },
    install_requires=[
        "twisted[tls,http2]>=24.7",
        "klein>=24.8",
        "hiredis>=3.0",
        "prometheus_client>=0.20",
        "pyjwt[crypto]>=2.8",
    ],
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
        ],
    },
)
