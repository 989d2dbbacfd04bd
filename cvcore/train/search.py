"""Choosing the model: successive halving over model kinds and hyper-parameters.

``cvcore search`` draws ``n`` candidate settings (model kind and that kind's hyper-parameters)
from a seeded generator and runs **successive halving** (Jamieson & Talwalkar 2016; the inner
loop of Hyperband, Li et al. 2018, alg. 1): every candidate is trained with a small budget and
scored on a validation split held out of the training set; the best ``1/eta`` go on to a budget
``eta`` times larger, and so on until one candidate has had the full budget. Bad candidates stop
early, so the search costs about ``rungs`` full trainings instead of ``n``.

The budget ``b`` (a fraction of the full one, ``eta**-k`` at rung ``k``) means:

* CNNs (``resnet20``...): ``max(1, round(b * max_epochs))`` epochs from scratch;
* HOG models: the classifier fitted on a ``b`` share of the training split (stratified).

Search space (log-uniform where a scale matters): CNN learning rate 0.02-0.5, weight decay
1e-5-1e-3, augmentation (flips and padded crops) on or off; ``hog-svm`` C 1e-4-0.1;
``hog-linear`` alpha 1e-6-1e-2; ``hog-knn`` k in 1..15.

Everything is written under ``--out``: ``results.jsonl`` (one line per finished trial, rewritten
atomically after each), ``results.md`` (the table), ``results.png`` (validation accuracy against
budget, one line per candidate), ``trials/<id>-r<rung>.npz`` (each trial's model), and at the end
``model.npz`` (the best candidate at the full budget) with the usual test-set report. A stopped
search run again with the same arguments skips the trials already in ``results.jsonl`` (the
candidates are a function of the seed), so it resumes where it stopped.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from cvcore.io.atomic import atomic_write

__all__ = ["SEARCHABLE", "sample_candidates", "successive_halving", "add_parser", "run"]

SEARCHABLE = ("hog-svm", "hog-linear", "hog-knn", "resnet20", "resnet32", "resnet56")
DEFAULT_MODELS = ("hog-svm", "hog-linear", "resnet20")
RESULTS = "results.jsonl"


def _log_uniform(rng, lo, hi):
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def sample_candidates(models, n, seed):
    """``n`` candidate settings, the model kinds taken in turn, hyper-parameters drawn from
    ``default_rng(seed)`` (the same arguments give the same candidates: resuming relies on it).

    >>> [c["model"] for c in sample_candidates(["hog-svm", "resnet20"], 3, 0)]
    ['hog-svm', 'resnet20', 'hog-svm']
    """
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        kind = models[i % len(models)]
        c = {"id": i, "model": kind}
        if kind == "hog-svm":
            c["C"] = _log_uniform(rng, 1e-4, 1e-1)
        elif kind == "hog-linear":
            c["alpha"] = _log_uniform(rng, 1e-6, 1e-2)
        elif kind == "hog-knn":
            c["k"] = int(rng.integers(1, 16))
        else:
            c["lr"] = _log_uniform(rng, 0.02, 0.5)
            c["weight_decay"] = _log_uniform(rng, 1e-5, 1e-3)
            c["augment"] = bool(rng.integers(0, 2))
        out.append(c)
    return out


def _subset(y, fraction, seed):
    """Sorted indices of a stratified ``fraction`` of the samples (at least one per class)."""
    if fraction >= 1:
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        keep.append(idx[:max(1, int(round(fraction * len(idx))))])
    return np.sort(np.concatenate(keep))


def _train_trial(cand, budget, data, max_epochs, seed, log):
    """Train one candidate at ``budget``; returns the TrainedModel."""
    from cvcore.train.loop import TrainConfig
    from cvcore.train.pipeline import HOG_MODELS, train_cnn_model, train_hog_model
    xt, yt, class_names = data["x_train"], data["y_train"], data["class_names"]
    kind = cand["model"]
    if kind in HOG_MODELS:
        idx = _subset(yt, budget, seed)
        return train_hog_model(kind, xt[idx], yt[idx], class_names, C=cand.get("C", 0.003),
                               alpha=cand.get("alpha", 1e-4), k=cand.get("k", 5),
                               log=lambda *_: None, features=_hog(data, "train")[idx])
    epochs = max(1, int(round(budget * max_epochs)))
    config = TrainConfig(epochs=epochs, batch_size=128, lr=cand["lr"],
                         weight_decay=cand["weight_decay"], seed=seed)
    model, _ = train_cnn_model(kind, xt, yt, None, None, class_names, config,
                               augment=cand["augment"], progress=False)
    return model


def _hog(data, split):
    """HOG features of a split, computed once per search (every HOG candidate shares them)."""
    key = "hog_" + split
    if key not in data:
        from cvcore.train.pipeline import HOGParams, TrainedModel, prepare_images
        x = data["x_" + split]
        if x.ndim == 4:
            x = prepare_images(list(x), x.shape[1:3], "gray")
        data[key] = TrainedModel("hog-svm", [], x.shape[1:3], "gray",
                                 {"hog": HOGParams().as_dict()}).hog_features(x)
    return data[key]


def _val_accuracy(model, data):
    from cvcore.train.pipeline import HOG_MODELS
    if model.kind in HOG_MODELS:
        feats = (_hog(data, "val") - model.arrays["feature_mean"]) / model.arrays["feature_std"]
        proba = model._classifier().predict_proba(feats.astype(np.float32))
    else:
        proba = model.predict_proba(data["x_val"])
    return float(np.mean(np.argmax(proba, axis=1) == data["y_val"]))


def _load_results(path):
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows


def _save_results(path, rows):
    with atomic_write(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def successive_halving(data, candidates, out_dir, eta=3, max_epochs=4, seed=0, log=print):
    """Run successive halving; returns ``(rows, best_row, best_model)`` (see the module
    docstring).

    Parameters
    ----------
    data : dict with ``x_train, y_train, x_val, y_val, class_names``
    candidates : list of dict from :func:`sample_candidates`
    out_dir : path; trials and results are written (and resumed) there
    eta : int >= 2, the halving rate
    max_epochs : int, the CNNs' full budget
    """
    from cvcore.train.pipeline import load_model
    if eta < 2:
        raise ValueError(f"eta must be at least 2, got {eta}")
    out_dir = Path(out_dir)
    (out_dir / "trials").mkdir(parents=True, exist_ok=True)
    path = out_dir / RESULTS
    rows = _load_results(path)
    done = {(r["id"], r["rung"]): r for r in rows}
    rungs = max(1, math.ceil(math.log(len(candidates), eta)) + 1)
    alive = list(candidates)
    for rung in range(rungs):
        budget = float(eta) ** (rung - rungs + 1)
        for cand in alive:
            key = (cand["id"], rung)
            if key in done:
                continue
            t0 = time.perf_counter()
            model = _train_trial(cand, budget, data, max_epochs, seed, log)
            acc = _val_accuracy(model, data)
            file = out_dir / "trials" / f"{cand['id']}-r{rung}.npz"
            model.save(file)
            row = dict(cand, rung=rung, budget=budget, val_acc=acc,
                       seconds=time.perf_counter() - t0, file=str(file.relative_to(out_dir)))
            rows.append(row)
            done[key] = row
            _save_results(path, rows)
            log(f"rung {rung} budget {budget:.3g}: candidate {cand['id']} {_describe(cand)} "
                f"val acc {acc:.4f} ({row['seconds']:.1f} s)")
        if rung < rungs - 1:
            scored = sorted(alive, key=lambda c: (-done[(c["id"], rung)]["val_acc"], c["id"]))
            alive = scored[:max(1, len(alive) // eta)]
    final = [done[(c["id"], rungs - 1)] for c in alive]
    best = max(final, key=lambda r: (r["val_acc"], -r["id"]))
    write_table(out_dir, rows, best)
    plot_results(out_dir / "results.png", rows)
    best_model = load_model(out_dir / best["file"])
    return rows, best, best_model


def _describe(c):
    keys = [k for k in ("C", "alpha", "k", "lr", "weight_decay", "augment") if k in c]
    return c["model"] + " " + " ".join(
        f"{k}={c[k]:.3g}" if isinstance(c[k], float) else f"{k}={c[k]}" for k in keys)


def write_table(out_dir, rows, best):
    """``results.md``: every trial, the best marked."""
    lines = ["| candidate | rung | budget | model | settings | val acc | seconds |",
             "|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["rung"], -r["val_acc"], r["id"])):
        mark = " **best**" if (r["id"], r["rung"]) == (best["id"], best["rung"]) else ""
        lines.append(f"| {r['id']}{mark} | {r['rung']} | {r['budget']:.3g} | {r['model']} | "
                     f"{_describe(r).split(' ', 1)[-1]} | {r['val_acc']:.4f} | "
                     f"{r['seconds']:.1f} |")
    with atomic_write(Path(out_dir) / "results.md", "w") as f:
        f.write("\n".join(lines) + "\n")


def plot_results(path, rows):
    """Validation accuracy against budget, one line per candidate, coloured by model kind."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    kinds = sorted({r["model"] for r in rows})
    colours = {k: plt.cm.tab10(i) for i, k in enumerate(kinds)}
    fig, ax = plt.subplots(figsize=(6, 4))
    for cid in sorted({r["id"] for r in rows}):
        mine = sorted((r for r in rows if r["id"] == cid), key=lambda r: r["budget"])
        ax.plot([r["budget"] for r in mine], [r["val_acc"] for r in mine], "o-",
                color=colours[mine[0]["model"]], alpha=0.8)
    for k in kinds:
        ax.plot([], [], "o-", color=colours[k], label=k)
    ax.set_xscale("log")
    ax.set_xlabel("budget (fraction of the full training)")
    ax.set_ylabel("validation accuracy")
    ax.set_title("successive halving")
    ax.legend()
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


# -- the command ----------------------------------------------------------------------------------
def add_parser(sub, add_data):
    p = sub.add_parser("search", help="choose a model: successive halving over model kinds and "
                                      "hyper-parameters on a validation split",
                       description=__doc__.split("\n\n")[1])
    p.add_argument("--models", default=",".join(DEFAULT_MODELS),
                   help=f"comma-separated kinds among {', '.join(SEARCHABLE)} "
                        f"(default {','.join(DEFAULT_MODELS)})")
    add_data(p)
    p.add_argument("--out", default="cvcore-search", help="folder for results and weights")
    p.add_argument("--candidates", type=int, default=9, help="settings drawn (default 9)")
    p.add_argument("--eta", type=int, default=3, help="halving rate (default 3)")
    p.add_argument("--max-epochs", type=int, default=4, help="CNNs' full budget (default 4)")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="share of the training set scored for the choice (default 0.2)")
    p.add_argument("--json", action="store_true", help="end with one JSON line of the result")
    p.set_defaults(func=run)
    return p


def run(args):
    from cvcore.cli import CommandError, _load_data, _split_val, _stderr, _write_report
    from cvcore.train.pipeline import model_path
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in models if m not in SEARCHABLE]
    if bad or not models:
        raise CommandError(f"--models: cannot search {bad or 'nothing'}; choose among "
                           f"{', '.join(SEARCHABLE)}")
    if args.candidates < 1 or args.max_epochs < 1:
        raise CommandError("--candidates and --max-epochs must be at least 1")
    if not 0 < args.val_fraction < 1:
        raise CommandError(f"--val-fraction must be in (0, 1), got {args.val_fraction}")
    t0 = time.perf_counter()
    data = _load_data(args)
    _stderr(f"data: {data!r}")
    xt, yt, xv, yv = _split_val(data, args.val_fraction, args.seed)
    split = {"x_train": xt, "y_train": yt, "x_val": xv, "y_val": yv,
             "class_names": data.class_names}
    candidates = sample_candidates(models, args.candidates, args.seed)
    rows, best, model = successive_halving(split, candidates, args.out, eta=args.eta,
                                           max_epochs=args.max_epochs, seed=args.seed,
                                           log=_stderr)
    out = Path(args.out)
    model.save(model_path(out))
    from cvcore.cli import _evaluate
    metrics, proba, raw = _evaluate(model, data)
    _write_report(model, metrics, proba, data, out, raw)
    seconds = time.perf_counter() - t0
    _stderr(f"best: candidate {best['id']} {_describe(best)}, val acc {best['val_acc']:.4f}; "
            f"test accuracy {metrics['accuracy']:.4f} ({seconds:.1f} s, {len(rows)} trials); "
            f"wrote {model_path(out)}, results.md, results.png in {out}")
    if args.json:
        print(json.dumps({"best": {k: v for k, v in best.items() if k != "file"},
                          "test_accuracy": metrics["accuracy"], "trials": len(rows),
                          "seconds": seconds}))
