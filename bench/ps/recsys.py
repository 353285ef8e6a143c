#!/usr/bin/env python3
"""A recommendation model trained on a parameter server, against single-process training.

    .venv/bin/python bench/ps/recsys.py [--systems reference,gradwire --servers 2 --workers 3]

Data: `clicks.py` (planted latent factors + a segment x category interaction; seeded; 80/20
train/test split). Model: user, item and category embedding tables (dim --dim) whose vectors
and their three pairwise dot products feed an MLP that outputs the click logit; binary
cross-entropy; Adagrad for every parameter, batch --batch, --epochs passes over the training
split.

* reference: one process, ordinary nn.Embedding (sparse gradients) + torch.optim.Adagrad.
* gradwire / rpc: --servers servers x --workers workers in mode "asp" (updates applied on
  arrival). Tables are PS-backed embeddings (gradwire.ps.ShardedEmbedding, or the RPC
  baseline's counterpart) with server-side Adagrad; the MLP's weights are one flat dense key
  with server-side Adagrad: after each backward a worker push_pulls its gradient and continues
  with the returned weights. Worker w trains on every W-th training example, so the job makes
  as many updates per epoch as the reference does.

Test AUC is measured on the whole test split every --eval-every steps (of worker 0 for the PS
runs) and at the end; the clock runs during evaluation for every run. Writes
recsys.{json,md,png} under --out.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Dict, List

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)

import clicks  # noqa: E402
import outputs  # noqa: E402
import systems  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

TABLES = ("user", "item", "cat")


@dataclass(frozen=True)
class HParams:
    dim: int = 16
    hidden: tuple = (64, 32)
    batch: int = 256
    epochs: int = 2
    lr_emb: float = 0.1
    lr_dense: float = 0.02
    init_std: float = 0.1
    eval_every: int = 200
    seed: int = 7


class RecModel(nn.Module):
    def __init__(self, tables: Dict[str, nn.Module], hp: HParams) -> None:
        super().__init__()
        self.tables = nn.ModuleDict(tables)
        torch.manual_seed(hp.seed)  # same MLP start in every run and worker
        width = 3 * hp.dim + 3
        layers: List[nn.Module] = []
        for h in hp.hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, user, item, cat) -> torch.Tensor:
        eu = self.tables["user"](user)
        ei = self.tables["item"](item)
        ec = self.tables["cat"](cat)
        dots = torch.stack([(eu * ei).sum(1), (eu * ec).sum(1), (ei * ec).sum(1)], dim=1)
        return self.mlp(torch.cat([eu, ei, ec, dots], dim=1)).squeeze(1)


def table_sizes(spec: clicks.ClickSpec) -> Dict[str, int]:
    return {"user": spec.num_users, "item": spec.num_items, "cat": spec.num_categories}


@torch.no_grad()
def test_auc(model: RecModel, data: Dict[str, torch.Tensor], chunk: int = 16384) -> float:
    n = data["label_test"].numel()
    logits = []
    for s in range(0, n, chunk):
        sl = slice(s, s + chunk)
        logits.append(model(data["user_test"][sl], data["item_test"][sl], data["cat_test"][sl]))
    return clicks.auc(data["label_test"], torch.cat(logits))


def batches(idx: torch.Tensor, hp: HParams, epoch: int, salt: int):
    g = torch.Generator().manual_seed(hp.seed * 7919 + epoch * 31 + salt)
    perm = idx[torch.randperm(idx.numel(), generator=g)]
    for s in range(0, perm.numel(), hp.batch):
        yield perm[s : s + hp.batch]


def run_reference(spec: clicks.ClickSpec, hp: HParams) -> Dict[str, Any]:
    torch.set_num_threads(1)
    data = clicks.generate(spec)
    torch.manual_seed(hp.seed + 1)  # the tables' start (the MLP's is seeded in RecModel)
    tables = {}
    for name, rows in table_sizes(spec).items():
        emb = nn.Embedding(rows, hp.dim, sparse=True)
        nn.init.normal_(emb.weight, std=hp.init_std)
        tables[name] = emb
    model = RecModel(tables, hp)
    opt_emb = torch.optim.Adagrad(model.tables.parameters(), lr=hp.lr_emb)
    opt_mlp = torch.optim.Adagrad(model.mlp.parameters(), lr=hp.lr_dense)
    loss_fn = nn.BCEWithLogitsLoss()
    train_idx = torch.arange(data["label_train"].numel())
    curve = [(0.0, 0, test_auc(model, data))]
    t0 = time.perf_counter()
    step = 0
    for epoch in range(hp.epochs):
        for b in batches(train_idx, hp, epoch, 0):
            logit = model(data["user_train"][b], data["item_train"][b], data["cat_train"][b])
            loss = loss_fn(logit, data["label_train"][b])
            opt_emb.zero_grad()
            opt_mlp.zero_grad()
            loss.backward()
            opt_emb.step()
            opt_mlp.step()
            step += 1
            if step % hp.eval_every == 0:
                curve.append((time.perf_counter() - t0, step, test_auc(model, data)))
    final = test_auc(model, data)
    total = time.perf_counter() - t0
    curve.append((total, step, final))
    return {"curve": curve, "final_auc": final, "seconds": total, "updates": step}


def ps_worker(worker_id: int, ep: systems.Endpoint, barrier, spec, hp: HParams):
    torch.set_num_threads(1)
    data = clicks.generate(spec)
    client = systems.connect(ep, worker_id)
    m = systems.optim_module(ep.system)
    tables = {
        name: systems.embedding(ep.system, client, rows, hp.dim, name, hp.lr_emb, hp.init_std)
        for name, rows in table_sizes(spec).items()
    }
    model = RecModel(tables, hp)
    params = list(model.mlp.parameters())
    flat = nn.utils.parameters_to_vector(params).detach().clone()
    client.register_dense("mlp", flat, optimizer=m.Adagrad(lr=hp.lr_dense))
    loss_fn = nn.BCEWithLogitsLoss()
    my_idx = torch.arange(data["label_train"].numel())[worker_id :: ep.num_workers]

    barrier.wait()
    client.pull("mlp", flat)
    nn.utils.vector_to_parameters(flat, params)
    curve = []
    if worker_id == 0:
        curve.append((0.0, 0, test_auc(model, data)))
    t0 = time.perf_counter()
    step = 0
    for epoch in range(hp.epochs):
        for b in batches(my_idx, hp, epoch, 1 + worker_id):
            logit = model(data["user_train"][b], data["item_train"][b], data["cat_train"][b])
            loss = loss_fn(logit, data["label_train"][b])
            model.mlp.zero_grad()
            loss.backward()  # the tables push their row gradients here
            grad = torch.cat([p.grad.reshape(-1) for p in params])
            client.push_pull("mlp", grad, flat)
            nn.utils.vector_to_parameters(flat, params)
            step += 1
            if worker_id == 0 and step % hp.eval_every == 0:
                # all workers step at about the same rate: job updates ~ W x own steps
                job_steps = step * ep.num_workers
                curve.append((time.perf_counter() - t0, job_steps, test_auc(model, data)))
    barrier.wait()  # every worker has finished
    out: Dict[str, Any] = {"updates": step}
    if worker_id == 0:
        client.pull("mlp", flat)
        nn.utils.vector_to_parameters(flat, params)
        final = test_auc(model, data)
        total = time.perf_counter() - t0
        curve.append((total, None, final))  # job total: filled in by run_ps
        out.update({"curve": curve, "final_auc": final, "seconds": total})
    barrier.wait()
    client.close()
    return out


def run_ps(system: str, spec, hp: HParams, servers: int, workers: int, timeout: float):
    with systems.Servers(system, servers, workers, mode="asp") as srv:
        per_worker = systems.run_workers(
            ps_worker, srv.endpoint, spec, hp, barrier=True, timeout=timeout
        )
    res = per_worker[0]
    res["updates"] = sum(w["updates"] for w in per_worker)
    res["curve"][-1] = (res["curve"][-1][0], res["updates"], res["curve"][-1][2])
    res["servers"], res["workers"], res["mode"] = servers, workers, "asp"
    return res


LABELS = {
    "reference": "single process (nn.Embedding + torch.optim)",
    "gradwire": "gradwire.ps async",
    "rpc": "torch RPC PS async",
}


def markdown(result: Dict[str, Any]) -> str:
    ref = result["runs"].get("reference")
    lines = [
        f"# Recommendation workload on a parameter server ({result['date']})",
        "",
        f"Command: `{result['command']}`",
        f"Data: {result['data']['num_samples']:,} impressions "
        f"({result['data']['num_users']:,} users, {result['data']['num_items']:,} items, "
        f"{result['data']['num_categories']} categories), test split "
        f"{result['data']['test_fraction']:.0%}; best possible test AUC (planted score) "
        f"{result['oracle_auc']:.4f}.",
        "",
        "| run | layout | updates | seconds | final test AUC | AUC - reference |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, run in result["runs"].items():
        layout = (
            "1 process"
            if name == "reference"
            else f"{run['servers']} servers x {run['workers']} workers, {run['mode']}"
        )
        diff = f"{run['final_auc'] - ref['final_auc']:+.4f}" if ref and name != "reference" else ""
        lines.append(
            f"| {LABELS[name]} | {layout} | {run['updates']:,} | {run['seconds']:.1f} | "
            f"{run['final_auc']:.4f} | {diff} |"
        )
    lines += ["", "Load (`uptime`) around each run:", ""]
    for entry in result["load"]:
        lines.append(f"- {entry['run']}: before `{entry['before']}`, after `{entry['after']}`")
    return "\n".join(lines) + "\n"


def plot(result: Dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.0), sharey=True)
    xlabels = ["wall-clock seconds since training start", "optimizer updates (all workers)"]
    for col, (ax, xlabel) in enumerate(zip(axes, xlabels)):
        for name, run in result["runs"].items():
            x = [p[col] for p in run["curve"]]
            a = [p[2] for p in run["curve"]]
            ax.plot(x, a, marker=".", label=f"{LABELS[name]}: {run['final_auc']:.4f}")
        ax.axhline(
            result["oracle_auc"],
            color="gray",
            ls="--",
            lw=1,
            label=f"planted score (best possible): {result['oracle_auc']:.4f}",
        )
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test AUC")
    axes[0].set_title("Click model: test AUC over wall-clock time", fontsize=10)
    axes[1].set_title("... and over optimizer updates", fontsize=10)
    axes[1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--systems", default="reference,gradwire", help="comma-separated: reference, gradwire, rpc"
    )
    p.add_argument("--servers", type=int, default=2)
    p.add_argument("--workers", type=int, default=3)
    d = clicks.ClickSpec()
    p.add_argument("--samples", type=int, default=d.num_samples)
    p.add_argument("--users", type=int, default=d.num_users)
    p.add_argument("--items", type=int, default=d.num_items)
    p.add_argument("--categories", type=int, default=d.num_categories)
    h = HParams()
    p.add_argument("--dim", type=int, default=h.dim)
    p.add_argument("--batch", type=int, default=h.batch)
    p.add_argument("--epochs", type=int, default=h.epochs)
    p.add_argument("--lr-emb", type=float, default=h.lr_emb)
    p.add_argument("--lr-dense", type=float, default=h.lr_dense)
    p.add_argument("--eval-every", type=int, default=h.eval_every)
    p.add_argument("--timeout", type=float, default=1200)
    outputs.add_out_args(p, "recsys")
    args = p.parse_args(argv)
    if args.replot:
        outputs.replot(args.out, "recsys", markdown, plot)
        return 0
    names = [s for s in args.systems.split(",") if s]
    for s in names:
        if s not in ("reference",) + systems.SYSTEMS:
            p.error(f"unknown run {s!r}; choose from reference,{','.join(systems.SYSTEMS)}")
    spec = clicks.ClickSpec(
        num_users=args.users,
        num_items=args.items,
        num_categories=args.categories,
        num_samples=args.samples,
    )
    hp = HParams(
        dim=args.dim,
        batch=args.batch,
        epochs=args.epochs,
        lr_emb=args.lr_emb,
        lr_dense=args.lr_dense,
        eval_every=args.eval_every,
    )
    out_dir = outputs.out_dir(args.out)

    runs: Dict[str, Any] = {}
    load = []
    for name in names:
        before = outputs.uptime()
        print(f"recsys: {name}", file=sys.stderr, flush=True)
        if name == "reference":
            runs[name] = run_reference(spec, hp)
        else:
            runs[name] = run_ps(name, spec, hp, args.servers, args.workers, args.timeout)
        load.append({"run": name, "before": before, "after": outputs.uptime()})
        print(
            f"recsys: {name} final test AUC {runs[name]['final_auc']:.4f} in "
            f"{runs[name]['seconds']:.1f}s",
            file=sys.stderr,
            flush=True,
        )

    result = {
        "date": outputs.today(),
        "command": outputs.command("recsys.py", argv),
        "data": spec.to_dict(),
        "hparams": asdict(hp),
        "oracle_auc": clicks.oracle_auc(clicks.generate(spec)),
        "machine": outputs.machine(),
        "load": load,
        "runs": runs,
    }
    if "reference" in runs:
        result["auc_gap_to_reference"] = {
            n: r["final_auc"] - runs["reference"]["final_auc"]
            for n, r in runs.items()
            if n != "reference"
        }
    print(outputs.save(out_dir, "recsys", result, markdown, plot))
    return 0


if __name__ == "__main__":
    sys.exit(main())
