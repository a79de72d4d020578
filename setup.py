"""Build the compiled envelope encoder; metadata lives in pyproject.toml.

    K2S_NO_EXTENSIONS=1   install without it (the pure-Python encoder is used)
    K2S_DEBUG_BUILD=1     -O0 -g, with Cython's bounds checks back on
    K2S_SANITIZE=address  build with a sanitizer (address, undefined)
"""

import os

from setuptools import setup


def extensions():
    if os.environ.get("K2S_NO_EXTENSIONS"):
        return []
    from Cython.Build import cythonize
    from setuptools import Extension

    debug = bool(os.environ.get("K2S_DEBUG_BUILD"))
    cflags = ["-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"]
    cflags += ["-O0", "-g"] if debug else ["-O3"]
    ldflags = []
    if sanitize := os.environ.get("K2S_SANITIZE"):
        cflags += [f"-fsanitize={sanitize}", "-fno-omit-frame-pointer"]
        ldflags += [f"-fsanitize={sanitize}"]
    encoder = Extension(
        "kafka2sidekiq._encoder_c",
        ["ext/_encoder_c.pyx"],
        include_dirs=["ext"],
        depends=["ext/k2s_json.h", "ext/k2s_wire.h"],
        extra_compile_args=cflags,
        extra_link_args=ldflags,
    )
    directives = {"boundscheck": debug, "wraparound": debug}
    return cythonize([encoder], compiler_directives=directives, quiet=True)


setup(ext_modules=extensions())
