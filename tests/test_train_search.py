"""Model search by successive halving: candidates, halving, the table and plot, the best model
kept, resuming a stopped search, and the command's errors."""
import json

import numpy as np
import pytest

from cvcore.io.datasets import load_embedded
from cvcore.train.search import sample_candidates, successive_halving


@pytest.mark.slow
def test_search_command_on_fashion_mnist_small_with_three_kinds(tmp_path):
    """The issue's run: three model kinds on the embedded subset, in minutes."""
    from cvcore.cli import main
    assert main(["search", "--models", "hog-svm,hog-linear,resnet20", "--out",
                 str(tmp_path), "--json"]) == 0
    assert (tmp_path / "model.npz").exists() and (tmp_path / "results.png").exists()


@pytest.fixture(scope="module")
def small():
    ds = load_embedded()
    rng = np.random.default_rng(0)
    tr = rng.permutation(len(ds.y_train))[:500]
    va = rng.permutation(len(ds.y_test))[:200]
    return {"x_train": ds.x_train[tr], "y_train": ds.y_train[tr], "x_val": ds.x_test[va],
            "y_val": ds.y_test[va], "class_names": ds.class_names}


def test_candidates_are_seeded_and_cover_the_kinds():
    a = sample_candidates(["hog-svm", "hog-linear", "resnet20"], 6, seed=3)
    assert a == sample_candidates(["hog-svm", "hog-linear", "resnet20"], 6, seed=3)
    assert [c["model"] for c in a] == ["hog-svm", "hog-linear", "resnet20"] * 2
    assert all(1e-4 <= c["C"] <= 0.1 for c in a if c["model"] == "hog-svm")
    assert all(0.02 <= c["lr"] <= 0.5 for c in a if c["model"] == "resnet20")


def test_halving_keeps_the_best_and_resumes_after_a_stop(small, tmp_path):
    # k-NN candidates: the halving logic without waiting for classifier fits (the linear
    # models' fits take tens of seconds; the command's full run is in benchmarks/README.md)
    cands = sample_candidates(["hog-knn"], 4, seed=0)
    lines = []
    rows, best, model = successive_halving(dict(small), cands, tmp_path / "full", eta=2,
                                           log=lines.append)
    # 4 -> 2 -> 1 candidates at budgets 1/4, 1/2, 1
    assert [sum(r["rung"] == k for r in rows) for k in range(3)] == [4, 2, 1]
    assert sorted({r["budget"] for r in rows}) == [0.25, 0.5, 1.0]
    rung1 = {r["id"] for r in rows if r["rung"] == 1}
    top2 = sorted((r for r in rows if r["rung"] == 0), key=lambda r: (-r["val_acc"], r["id"]))[:2]
    assert rung1 == {r["id"] for r in top2}
    assert best["rung"] == 2 and best["id"] in rung1
    proba = model.predict_proba(small["x_val"])
    assert np.mean(proba.argmax(1) == small["y_val"]) == pytest.approx(best["val_acc"])
    for name in ("results.jsonl", "results.md", "results.png"):
        assert (tmp_path / "full" / name).stat().st_size > 0
    assert "**best**" in (tmp_path / "full" / "results.md").read_text()

    # a search stopped after three trials resumes without redoing them, to the same result
    count = []

    def stop_after_three(line):
        count.append(line)
        if len(count) == 3:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        successive_halving(dict(small), cands, tmp_path / "part", eta=2, log=stop_after_three)
    assert len((tmp_path / "part" / "results.jsonl").read_text().splitlines()) == 3
    again = []
    rows2, best2, _ = successive_halving(dict(small), cands, tmp_path / "part", eta=2,
                                         log=again.append)
    assert len(again) == len(rows) - 3
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in rows2] == strip
    assert best2["id"] == best["id"]


def test_command_errors(tmp_path):
    from cvcore.cli import main
    assert main(["search", "--models", "alexnet", "--out", str(tmp_path)]) == 2
    assert main(["search", "--candidates", "0", "--out", str(tmp_path)]) == 2
