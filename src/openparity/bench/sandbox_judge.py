"""Sandbox judge: runs a task's tests against an answer that lives in the sandbox. Stdlib only.

`python -I -B sandbox_judge.py REQUEST_FD REPLY_FD VERDICT_FD` with a JSON object on stdin:
`prelude` (trusted code run first: HumanEval's prompt, with its helper functions), `tests`
(trusted test code), `proxy` (the names that stand for the answer's functions, or null: every
name the tests read that neither the prelude nor Python's builtins define) and `shadows` (the
builtins among those the answer is meant to replace).

The answer never runs here. Each name the tests call is a proxy that sends the arguments as
plain data to the callee in the sandbox and decodes its reply strictly (`plain_data.py`), so
comparisons, asserts and builtins are all this process's own: a result whose `__eq__` always
says yes, patched builtins, a stolen secret or a test file read from disk do not exist here.
The verdict, one JSON object, goes to VERDICT_FD, which the sandbox cannot reach: it passes
only when the tests ran to their end, every reply was well-formed and every result was data.
"""

import builtins
import dis
import importlib
import json
import os
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import plain_data

# the exceptions an answer may raise into the tests (`except ValueError:` in a test); any other
# type arrives as CandidateError
CROSSING_EXCEPTIONS = {
    name: value
    for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, Exception)
}


class CandidateError(Exception):
    """The answer raised an exception that is not one of Python's built-in ones."""


class BrokenCall(BaseException):
    """The exchange with the sandbox failed; the verdict is a failure whatever the tests do."""


class Callee:
    """The sandbox side of the wall: numbered requests, strictly decoded replies."""

    def __init__(self, request_fd, reply_fd):
        self.request_fd, self.read = request_fd, plain_data.fd_reader(reply_fd)
        self.calls, self.counter, self.broken = 0, 0, None

    def request(self, message):
        if self.broken:
            raise BrokenCall(self.broken)
        self.counter += 1
        try:
            plain_data.write_all(self.request_fd, plain_data.dumps({"id": self.counter, **message}))
            reply = plain_data.read_frame(self.read)
        except (OSError, plain_data.PlainDataError) as exc:
            self.fail(f"the answer's process sent a malformed reply ({exc})")
        if reply is None:
            self.fail("the answer's process ended during a call")
        if reply.get("id") != self.counter:
            self.fail("the answer's process sent a reply out of turn")
        return reply

    def fail(self, reason):
        self.broken = self.broken or reason
        raise BrokenCall(self.broken)

    def proxy(self, name):
        def call_the_answer(*args, **kwargs):
            try:
                encoded = plain_data.encode(list(args)), plain_data.encode(kwargs)
            except plain_data.Uncrossable as exc:
                self.fail(f"the tests pass {exc} to {name}(), which cannot cross as data")
            self.calls += 1
            reply = self.request({"call": name, "args": encoded[0], "kwargs": encoded[1]})
            return self.result(name, reply)

        call_the_answer.__name__ = call_the_answer.__qualname__ = name
        return call_the_answer

    def result(self, name, reply):
        if "value" in reply:
            try:
                return plain_data.decode(reply["value"])
            except plain_data.PlainDataError as exc:
                self.fail(f"{name}() returned malformed data ({exc})")
        if "uncrossable" in reply:
            kind = str(reply["uncrossable"])[:80]
            self.fail(f"{name}() returned a value of type {kind}, which is not plain data")
        raised = reply.get("raised")
        if type(raised) is list and len(raised) == 2 and all(type(x) is str for x in raised):
            kind = CROSSING_EXCEPTIONS.get(raised[0], CandidateError)
            if kind is CandidateError:
                raise CandidateError(f"{raised[0][:80]}: {raised[1]}")
            raise kind(raised[1])
        self.fail("the answer's process sent a reply of no known kind")


def names_read(code):
    """Global names the code reads, in its own body and every function it defines."""
    found, stack = set(), [code]
    while stack:
        current = stack.pop()
        for instruction in dis.get_instructions(current):
            if instruction.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
                found.add(instruction.argval)
        stack.extend(c for c in current.co_consts if hasattr(c, "co_code"))
    return found


def bind_answer(callee, namespace, names):
    """Bind each of `names` the answer defines: functions as proxies, plain values as data,
    standard-library modules as this process's own import of them. Returns what could not be
    bound (a class the answer defines, an object) as {name: why}."""
    reply = callee.request({"describe": sorted(names)})
    kinds = reply.get("kinds")
    if type(kinds) is not dict:
        callee.fail("the answer's process did not describe its names")
    unbound = {}
    for name in names:
        kind = kinds.get(name)
        kind = kind if type(kind) is list and kind and type(kind[0]) is str else ["missing"]
        if kind[0] == "function":
            namespace[name] = callee.proxy(name)
        elif kind[0] == "value" and len(kind) == 2:
            try:
                namespace[name] = plain_data.decode(kind[1])
            except plain_data.PlainDataError:
                unbound[name] = "malformed data"
        elif kind[0] == "module" and len(kind) == 2 and kind[1] in sys.stdlib_module_names:
            namespace[name] = importlib.import_module(kind[1])
        elif kind[0] != "missing":
            unbound[name] = f"a {kind[0]}, which cannot cross as data"
    return unbound


def judge(config, callee):
    first = plain_data.read_frame(callee.read)
    if first is None or "ready" not in first:
        reason = str((first or {}).get("load_error") or "its process ended")[:300]
        return {"passed": False, "reason": f"the answer does not load: {reason}"}
    namespace = {"__name__": "__judge__", "__builtins__": builtins}
    exec(compile(config["prelude"], "prelude.py", "exec"), namespace)
    tests = compile(config["tests"], "tests.py", "exec")
    names = config["proxy"]
    if names is None:
        read = names_read(tests)
        names = sorted(
            n
            for n in read
            if n not in namespace and (not hasattr(builtins, n) or n in config["shadows"])
        )
    unbound = bind_answer(callee, namespace, names)
    try:
        exec(tests, namespace)
    except BaseException as exc:
        reason = callee.broken or _failure(exc)
        if isinstance(exc, NameError) and unbound:
            reason += " (the tests need {})".format(
                ", ".join(f"{n}: {w}" for n, w in unbound.items())
            )
        return {"passed": False, "reason": reason, "calls": callee.calls}
    if callee.broken:  # a test swallowed the failure (`except BaseException`)
        return {"passed": False, "reason": callee.broken, "calls": callee.calls}
    return {"passed": True, "reason": "passed", "calls": callee.calls}


def _failure(exc):
    where = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == "tests.py"]
    line = f" (tests line {where[-1]})" if where else ""
    text = str(exc).strip().splitlines()
    return "{}{}{}".format(type(exc).__name__, ": " + text[0][:200] if text else "", line)


def main():
    request_fd, reply_fd, verdict_fd = (int(a) for a in sys.argv[1:4])
    config = json.load(sys.stdin)
    callee = Callee(request_fd, reply_fd)
    try:
        verdict = judge(config, callee)
    except plain_data.PlainDataError as exc:
        verdict = {"passed": False, "reason": f"the answer's process sent malformed data ({exc})"}
    except BrokenCall as exc:
        verdict = {"passed": False, "reason": str(exc)}
    os.close(request_fd)  # the callee sees EOF and ends
    plain_data.write_all(verdict_fd, json.dumps(verdict).encode())
    os.close(verdict_fd)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
