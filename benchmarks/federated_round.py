"""Cost of a federated round against the same optimizer steps done centrally, same model,
same data, same LoRA, in the same run:

  federated   `openparity federated simulate` (Flower + Ray) with M members, each doing S local
              steps per round; the round's wall time from the coordinator's history, and the
              bytes that travel (the adapter down to and back from each member)
  deployment  (--deployment) the same round with a SuperLink and M SuperNodes as processes
  secure      (--secure, M >= 3) the simulated round under SecAgg+: its time, and the bytes
              the members upload (keys, shares, masked vectors) as counted by the coordinator
  central     one process training the pooled data for M x S steps (all the steps of a round)

    python benchmarks/federated_round.py [--base smollm2-135m] [--members 3] [--steps 2]

Prints seconds per round, the ratio to central, MB per round and per member, and how that
compares with sending the whole model.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "openparity.cli"]


def write_data(where: Path, n: int) -> Path:
    from openparity.bench.tasks import get_task

    path = where / "pooled.jsonl"
    with open(path, "w", encoding="utf-8") as handle:
        for index, item in enumerate(get_task("gsm8k").items()[600 : 600 + n]):
            handle.write(
                json.dumps(
                    {
                        "id": f"gsm8k/{600 + index}",
                        "prompt": item.input["question"],
                        "response": f"The answer is {item.reference}. #### {item.reference}",
                    }
                )
                + "\n"
            )
    return path


def federated(args, data: Path, out: Path, *, deployment: bool, secure: bool = False) -> dict:
    from openparity.federated.partition import split_members

    members = split_members(data, args.members, "iid", out / "members")
    common = [
        "--base",
        args.base,
        "--rounds",
        str(args.rounds),
        "--local-steps",
        str(args.steps),
        "--batch-size",
        str(args.batch),
        "--min-members",
        str(args.members),
        "--decontaminate",
        "",
        "--validation-share",
        "0",
        *(["--secure"] if secure else []),
    ]
    run = out / "run"
    if not deployment:
        data_args = [a for m in members for a in ("--data", str(m))]
        subprocess.run(
            [*CLI, "federated", "simulate", *data_args, "-o", str(run), *common],
            check=True,
            cwd=ROOT,
        )
    else:
        sys.path.insert(0, str(ROOT))
        from tests.federated.deployment import deployment as deployed

        with deployed(out, members, common) as (coordinator, _):
            if coordinator.wait(timeout=3600) != 0:
                raise SystemExit((out / "serve.log").read_text()[-3000:])
    history = json.loads((run / "history.json").read_text())
    rounds = [entry for entry in history if entry["round"] > 0]
    return {
        "seconds": [entry["seconds"] for entry in rounds],
        "adapter_bytes": rounds[0]["adapter_bytes"],
        "members": rounds[0]["train"]["members"],
        "uploaded": rounds[0].get("secure_upload_bytes"),  # all members, all protocol stages
    }


def central(args, data: Path) -> float:
    """Seconds for members x steps optimizer steps on the pooled data, in this process."""
    from openparity.federated.adapter import initial_state, lora_model
    from openparity.federated.member import read_member_data, train_round
    from openparity.federated.settings import FederationSettings

    settings = FederationSettings(
        base=args.base,
        local_steps=args.members * args.steps,
        batch_size=args.batch,
        decontaminate="",
        validation_share=0.0,
    )
    lora_model(settings)  # the model load is not a training cost
    pooled = read_member_data(str(data), settings)
    state = initial_state(settings)
    started = time.perf_counter()
    train_round(settings, state, pooled, server_round=1)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="smollm2-135m")
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2, help="local steps per member per round")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--deployment", action="store_true", help="also time a deployment")
    parser.add_argument("--secure", action="store_true", help="also time a SecAgg+ round")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        data = write_data(where, args.examples)
        arms = {"federated (simulation)": federated(args, data, where / "sim", deployment=False)}
        if args.deployment:
            arms["federated (deployment)"] = federated(args, data, where / "dep", deployment=True)
        if args.secure:
            arms["federated (simulation, SecAgg+)"] = federated(
                args, data, where / "secure", deployment=False, secure=True
            )
        central_s = central(args, data)
    from openparity.federated.adapter import libraries

    torch, _ = libraries()
    model_bytes = _model_bytes(args.base)
    print(
        f"\n{args.members} members x {args.steps} local steps x batch {args.batch}, "
        f"{args.rounds} rounds, base {args.base}, torch {torch.__version__}"
    )
    print(f"central, {args.members * args.steps} steps in one process: {central_s:.1f} s")
    for name, arm in arms.items():
        per_round = arm["seconds"]
        mean = sum(per_round) / len(per_round)
        down = arm["adapter_bytes"] * arm["members"]
        up = arm["uploaded"] or down
        print(
            f"{name}: rounds {', '.join(f'{s:.1f}' for s in per_round)} s; mean {mean:.1f} s"
            f" = {mean / central_s:.2f}x central; {(up + down) / 1e6:.2f} MB per round"
            f" ({arm['adapter_bytes'] / 1e6:.2f} MB down, {up / arm['members'] / 1e6:.2f} MB"
            f" up per member; the whole model would be {model_bytes / 1e6:.0f} MB)"
        )


def _model_bytes(base: str) -> int:
    from openparity.federated.adapter import lora_model
    from openparity.federated.settings import FederationSettings

    model, _ = lora_model(FederationSettings(base=base, decontaminate=""))
    return sum(
        p.numel() * p.element_size() for n, p in model.named_parameters() if "lora_" not in n
    )


if __name__ == "__main__":
    main()
