"""How llama.cpp (llama-cpp-python) is compiled so that it runs on the user's CPU.

llama-cpp-python builds llama.cpp from source, by default for the build machine's CPU
(`GGML_NATIVE`). On a CPU that advertises a feature the OS does not enable (AMX on some
virtual machines) such a build dies with a segfault on the first multi-token decode. openparity
builds for a portable baseline instead: AVX2/FMA/F16C on x86-64, the architecture's baseline
elsewhere. Stdlib only: `scripts/install.sh` runs this file before openparity is installed.
"""

from __future__ import annotations

import platform
import shlex
import sys

LLAMA_CPP_PYTHON_VERSION = "0.3.36"

_X86_64_BASELINE = (
    "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
)


def portable_cmake_args(machine: str | None = None) -> str:
    """CMake arguments for a llama.cpp build that runs on any CPU of this architecture
    (x86-64: any CPU with AVX2, the 2013 Haswell baseline; ARM64 and others: the baseline)."""
    machine = (machine or platform.machine()).lower()
    if machine in {"x86_64", "amd64"}:
        return f"{_X86_64_BASELINE} -DLLAMA_CURL=OFF"
    return "-DGGML_NATIVE=OFF -DLLAMA_CURL=OFF"


def rebuild_command(machine: str | None = None) -> str:
    """The pip command that rebuilds llama-cpp-python portably, bypassing pip's wheel cache
    (which is keyed by the source only and would hand back the old build)."""
    args = shlex.quote(portable_cmake_args(machine))
    return (
        f"CMAKE_ARGS={args} pip install --force-reinstall --no-deps --no-cache-dir "
        f"--no-binary llama-cpp-python llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}"
    )


if __name__ == "__main__":  # used by scripts/install.sh
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what == "cmake-args":
        print(portable_cmake_args())
    elif what == "version":
        print(LLAMA_CPP_PYTHON_VERSION)
    else:
        sys.exit("usage: llama_build.py cmake-args|version")
