"""Sandbox runner: runs `main.py` and proves it ran to its end. Stdlib only.

`python -I -B sandbox_runner.py NONCE_FD RESULT_FD` in the program's work dir. It reads a
per-run secret nonce from NONCE_FD into a buffer (no copy as a Python object), closes it, runs
main.py in a fresh module namespace, and only when that returns normally (the last assertion
passed) writes the nonce to RESULT_FD. An early `sys.exit(0)`, `os._exit(0)`,
`raise SystemExit`, an exception swallowed by a patched `sys.excepthook`, a killed runner or a
forged line on stdout: none of them writes the nonce, so none of them is a pass.
"""

import contextlib
import os
import sys
import traceback


def _flush():
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # the program may have closed its streams
            stream.flush()


def main():
    nonce_fd, result_fd = int(sys.argv[1]), int(sys.argv[2])
    nonce = bytearray(64)
    size = os.readv(nonce_fd, [nonce])
    os.close(nonce_fd)
    del sys.argv[1:]
    with open("main.py", "rb") as handle:
        code = compile(handle.read(), "main.py", "exec")
    namespace = {"__name__": "__main__", "__file__": "main.py", "__builtins__": __builtins__}
    try:
        exec(code, namespace)
    except BaseException:  # SystemExit too: a program that ends early did not pass
        traceback.print_exc()
        _flush()
        os._exit(1)
    _flush()
    os.write(result_fd, bytes(nonce[:size]))
    os._exit(0)


if __name__ == "__main__":
    main()
