"""Build of the optional C kernels; everything else is declared in pyproject.toml.

The extension is ``optional``: without a C compiler the build carries on and medloss computes
the same losses with PyTorch operations (see ``medloss.native_kernels_available``). It uses no
Python API beyond an empty module object, so it is built against the stable ABI (``abi3``): one
wheel per platform serves every Python >= 3.10.
"""

import sys

from setuptools import Extension, setup

if sys.platform == "win32":
    flags = ["/O2"]
else:
    flags = ["-O3", "-fopenmp-simd", "-fno-math-errno", "-fno-trapping-math", "-pthread", "-std=gnu11"]

setup(
    ext_modules=[
        Extension(
            "medloss._kernels",
            sources=["src/medloss/_kernels.c"],
            depends=["src/medloss/_kernels_impl.h"],
            define_macros=[("MEDLOSS_PYTHON_MODULE", "1"), ("Py_LIMITED_API", "0x030A0000")],
            py_limited_api=True,
            extra_compile_args=flags,
            extra_link_args=[] if sys.platform == "win32" else ["-pthread"],
            optional=True,
        )
    ],
    options={"bdist_wheel": {"py_limited_api": "cp310"}},
)
