"""Build hook for the optional C speed-up of the taxi reader.

Everything else is declared in pyproject.toml. The extension is ``optional``: without a C
compiler or Python headers the install still succeeds and the reader uses its pure-Python
row loop (same output, slower).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "flowhawk.taxi._rows",
            sources=["src/flowhawk/taxi/_rows.c"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
