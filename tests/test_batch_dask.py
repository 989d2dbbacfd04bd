"""Batch jobs on a real Dask cluster started here (a LocalCluster of two worker processes on
loopback): the same output as the local run, row for row, also when a worker is killed mid-run."""
import os
import signal
import time

import numpy as np
import pytest

pytest.importorskip("distributed", reason="the Dask tests need dask[distributed] (the batch extra)")

from cvcore.batch import extract_features, load_features, predict_folder  # noqa: E402
from cvcore.batch.job import _local_cluster  # noqa: E402
from tests.test_batch import make_folder, train_small_model  # noqa: E402


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from distributed import Client
    cluster = _local_cluster(2)          # what --scheduler processes:2 starts
    client = Client(cluster)
    client.wait_for_workers(2, timeout=60)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    root = tmp_path_factory.mktemp("dask")
    weights = root / "model.npz"
    data = train_small_model(weights)
    folder = make_folder(root / "photos", data.x_test, 60)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    expected = root / "local.jsonl"
    predict_folder(folder, weights, expected, partition_size=3, progress=False)
    return folder, weights, expected


def worker_pids(client) -> dict:
    return client.run(os.getpid)


def test_a_local_cluster_gives_the_local_output_row_for_row(client, job, tmp_path):
    folder, weights, expected = job
    out = tmp_path / "dask.jsonl"
    report = predict_folder(folder, weights, out, partition_size=3, scheduler=client,
                            progress=False)
    assert out.read_bytes() == expected.read_bytes()
    assert report.workers == 2 and report.partitions == 21 and report.errors == 1
    # each worker process loaded the model once and kept it for all its partitions
    assert report.model_loads == 2


def test_killing_a_worker_mid_run_costs_only_its_partitions(client, job, tmp_path):
    folder, weights, expected = job
    before = worker_pids(client)
    victim = sorted(before.values())[0]
    killed = []

    def kill_one(i):
        if not killed:
            os.kill(victim, signal.SIGKILL)         # as the OOM killer would
            killed.append(i)
    out = tmp_path / "dask.jsonl"
    report = predict_folder(folder, weights, out, partition_size=3, scheduler=client,
                            progress=False, on_partition=kill_one)
    assert killed and report.resumed == 0
    assert out.read_bytes() == expected.read_bytes()
    # the nanny started a new worker process in place of the killed one
    deadline = time.monotonic() + 60
    after = {}
    while time.monotonic() < deadline:
        try:                  # a worker still restarting may not answer yet
            after = worker_pids(client)
        except Exception:
            after = {}
        if len(after) == 2 and victim not in after.values():
            break
        time.sleep(0.2)
    assert victim not in after.values() and len(after) == 2


def test_hog_features_on_the_cluster_equal_the_local_ones(client, job, tmp_path):
    folder, _, _ = job
    kwargs = dict(size=(28, 28), partition_size=7, progress=False, pixels_per_cell=(7, 7),
                  cells_per_block=(2, 2))
    extract_features(folder, tmp_path / "local", "hog", **kwargs)
    # the tcp://HOST:PORT form: an existing cluster, reached by its scheduler's address
    address = client.scheduler.address
    assert address.startswith("tcp://127.0.0.1:")
    extract_features(folder, tmp_path / "dask", "hog", scheduler=address, **kwargs)
    paths_l, x_l = load_features(tmp_path / "local")
    paths_d, x_d = load_features(tmp_path / "dask")
    assert paths_l == paths_d and len(paths_l) == 60
    np.testing.assert_array_equal(x_l, x_d)
    assert (tmp_path / "local" / "index.jsonl").read_bytes() == \
        (tmp_path / "dask" / "index.jsonl").read_bytes()


def test_the_command_starts_and_stops_its_own_local_cluster(job, tmp_path, capsys):
    from cvcore.cli import main
    folder, weights, expected = job
    out = tmp_path / "cli.jsonl"
    assert main(["predict", str(folder), "--weights", str(weights), "--out", str(out),
                 "--partition-size", "3", "--scheduler", "processes:1"]) == 0
    assert out.read_bytes() == expected.read_bytes()
    assert "on processes:1" in capsys.readouterr().err


def test_workers_that_cannot_import_the_task_end_in_one_clear_error(client, job, tmp_path,
                                                                     monkeypatch):
    """A task class the workers cannot import (as on a cluster without cvcore installed)."""
    from cvcore.batch.job import FolderJob, run_job
    from cvcore.batch.predict import PredictStore
    folder, _, _ = job
    (tmp_path / "only_on_the_driver.py").write_text(
        "class Task:\n"
        "    def decode(self, paths):\n        return paths\n"
        "    def compute(self, paths, decoded):\n        raise AssertionError('never runs')\n")
    monkeypatch.syspath_prepend(str(tmp_path))          # the driver's path, not the workers'
    from only_on_the_driver import Task
    parts = FolderJob(tmp_path / "parts", {"job": "x"}, [str(folder)], 30)
    with pytest.raises(ValueError, match="cannot import only_on_the_driver .*install cvcore"):
        run_job(parts, Task(), PredictStore(parts, tmp_path / "x.jsonl", 1), client)
    assert (tmp_path / "parts" / "manifest.json").is_file()   # kept for a resume
