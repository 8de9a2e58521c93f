"""Expert parallelism on 2 CPU processes over gloo: the same outputs and gradients as one
process running the whole layer."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")

from openparity.models.local_server import free_port  # noqa: E402

WORKER = textwrap.dedent(
    """
    import os, sys, torch, torch.distributed as dist
    from openparity.moe.config import MoEConfig
    from openparity.moe.layer import MoELayer
    from openparity.moe.parallel import ExpertParallelMoE

    rank, port, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    torch.manual_seed(0)  # the same full layer on both ranks
    layer = MoELayer(MoEConfig(hidden=16, expert_dim=8, n_routed=8, top_k=2, n_shared=1,
                               router="sigmoid", n_groups=2, topk_groups=1))
    parallel = ExpertParallelMoE(layer)
    x = torch.randn(2, 2, 9, 16)[rank].requires_grad_(True)  # each rank its own tokens
    y = parallel(x)
    y.pow(2).sum().backward()
    torch.save({"x": x.detach(), "y": y.detach(), "dx": x.grad,
                "dgate_up": parallel.gate_up_proj.grad, "drouter": layer.router.weight.grad}, out)
    dist.barrier()
    dist.destroy_process_group()
    """
)


def run_two_ranks(tmp_path, source: str) -> list[dict]:
    """Run `source` as ranks 0 and 1 of a gloo group; what each rank saved."""
    script = tmp_path / "worker.py"
    script.write_text(source, encoding="utf-8")
    port = str(free_port())
    outs = [tmp_path / f"rank{r}.pt" for r in range(2)]
    workers = [
        subprocess.Popen([sys.executable, str(script), str(r), port, str(outs[r])])
        for r in range(2)
    ]
    assert [w.wait(timeout=120) for w in workers] == [0, 0]
    return [torch.load(o) for o in outs]


def test_two_ranks_match_one_process(tmp_path):
    from openparity.moe.config import MoEConfig
    from openparity.moe.layer import MoELayer

    ranks = run_two_ranks(tmp_path, WORKER)

    torch.manual_seed(0)
    layer = MoELayer(
        MoEConfig(
            hidden=16,
            expert_dim=8,
            n_routed=8,
            top_k=2,
            n_shared=1,
            router="sigmoid",
            n_groups=2,
            topk_groups=1,
        )
    )
    x = torch.stack([r["x"] for r in ranks]).requires_grad_(True)
    y = layer(x)
    y.pow(2).sum().backward()
    for rank, got in enumerate(ranks):
        torch.testing.assert_close(got["y"], y[rank].detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got["dx"], x.grad[rank], rtol=1e-5, atol=1e-6)
        local = layer.experts.gate_up_proj.grad[rank * 4 : (rank + 1) * 4]
        torch.testing.assert_close(got["dgate_up"], local, rtol=1e-4, atol=1e-6)
    # the router is replicated: its gradients summed over ranks equal the single process's
    torch.testing.assert_close(
        ranks[0]["drouter"] + ranks[1]["drouter"], layer.router.weight.grad, rtol=1e-4, atol=1e-6
    )


BALANCED = (
    "MoEConfig(hidden=16, expert_dim=8, n_routed=8, top_k=2, n_shared=1, router='sigmoid',"
    " n_groups=2, topk_groups=1, expert_aux_alpha=0.1, device_aux_alpha=0.05,"
    " seq_aux_alpha=0.2, bias_update_speed=0.01)"
)

BALANCE_WORKER = textwrap.dedent(
    """
    import sys, torch, torch.distributed as dist
    from openparity.moe.config import MoEConfig
    from openparity.moe.layer import MoELayer
    from openparity.moe.parallel import ExpertParallelMoE

    rank, port, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    torch.manual_seed(0)
    layer = MoELayer(CONFIG)
    parallel = ExpertParallelMoE(layer).train()
    x = torch.randn(2, 3, 7, 16)[rank]  # 3 sequences of 7 tokens per rank
    y = parallel(x)
    (y.pow(2).mean() + parallel.aux_loss).backward()
    aux = float(parallel.aux_loss)
    violation = parallel.max_violation()
    parallel.update_bias()
    parallel.eval()
    parallel(torch.randn(5, 7, 16))  # evaluation tokens count for nothing
    torch.save({"aux": aux, "drouter": layer.router.weight.grad, "bias": layer.router.bias.clone(),
                "violation": violation, "load_after_eval": parallel.load.clone()}, out)
    dist.barrier()
    dist.destroy_process_group()
    """
).replace("CONFIG", BALANCED)


def test_balancing_across_ranks_equals_one_process(tmp_path):
    from openparity.moe.config import MoEConfig
    from openparity.moe.layer import MoELayer

    ranks = run_two_ranks(tmp_path, BALANCE_WORKER)

    torch.manual_seed(0)
    layer = MoELayer(eval(BALANCED, {"MoEConfig": MoEConfig})).train()
    x = torch.randn(2, 3, 7, 16).reshape(6, 7, 16)  # both ranks' sequences in one batch
    y = layer(x)
    (y.pow(2).mean() * 2 + layer.aux_loss).backward()  # the ranks' two means sum to 2x this
    violation = layer.max_violation()
    layer.update_bias()
    assert layer.aux_loss.item() > 0
    # the balance loss: the ranks' shares sum to the one-process loss
    assert ranks[0]["aux"] + ranks[1]["aux"] == pytest.approx(layer.aux_loss.item(), rel=1e-5)
    assert ranks[0]["violation"] == ranks[1]["violation"] == pytest.approx(violation)
    # aux-loss-free balancing: every rank's bias moved by the global load, as one process's
    for rank in ranks:
        torch.testing.assert_close(rank["bias"], layer.router.bias)
        assert rank["load_after_eval"].sum() == 0
    assert layer.router.bias.abs().sum() > 0
    total = ranks[0]["drouter"] + ranks[1]["drouter"]
    torch.testing.assert_close(total, layer.router.weight.grad, rtol=1e-4, atol=1e-6)
