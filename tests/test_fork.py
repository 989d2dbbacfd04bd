"""A forked child runs cvcore's parallel kernels: GNU OpenMP would terminate it (kernels/_fork.py).

Each case runs in a fresh interpreter, so that what the parent imported and started before the
fork is exactly what the case says (the test process itself has run every kernel already).
"""
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The parent starts the OpenMP layer with a parallel kernel (max pooling), then a pool of forked
# workers runs max pooling (its kernel module imported before the fork), Harris corners (its
# kernel module imported in the child, after the fork) and a ResNet-20 forward at batch 32 (the
# pixel-major bands); every result must equal the parent's.
CASE = textwrap.dedent("""
    import multiprocessing, sys
    import numpy as np
    from cvcore.nn.layers import maxpool2d_forward
    from cvcore.features.corners import harris
    import cvcore.nn as cnn

    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 16, 32, 32)).astype(np.float32)
    image = rng.random((96, 128)).astype(np.float32)
    batch = rng.standard_normal((32, 3, 32, 32)).astype(np.float32)

    def work(_):
        fresh = "kernels.corners" not in sys.modules
        net = cnn.resnet20(rng=0).eval()
        with cnn.no_grad():
            logits = net(batch)
        return (maxpool2d_forward(x, 2)[0], harris(image), logits, fresh,
                type(sys.modules["kernels.nn_pool"].maxpool2d_forward).__name__)

    if __name__ == "__main__":
        pooled = maxpool2d_forward(x, 2)[0]                 # the OpenMP layer starts here
        from numba.np.ufunc import parallel
        assert parallel._is_initialized and parallel._threading_layer == "omp"
        with multiprocessing.get_context("fork").Pool(2) as pool:
            # a worker killed by OpenMP would leave its task unanswered: wait a bounded time
            results = pool.map_async(work, range(2), chunksize=1).get(timeout=120)
        net = cnn.resnet20(rng=0).eval()
        with cnn.no_grad():
            logits = net(batch)
        corners = harris(image)
        for got_pool, got_corners, got_logits, fresh, kind in results:
            assert fresh, "kernels.corners was imported before the fork"
            assert kind == "SerialTwin", kind
            assert np.array_equal(got_pool, pooled)
            assert np.array_equal(got_corners, corners)
            assert np.array_equal(got_logits, logits)
        assert type(sys.modules["kernels.nn_pool"].maxpool2d_forward).__name__ != "SerialTwin"
        print("ok")
""")


def _run(source, tmp_path, timeout):
    """Run ``source`` as a script in a fresh interpreter that imports this tree's cvcore."""
    script = tmp_path / "case.py"
    script.write_text(source)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=tmp_path)


def test_forked_workers_run_parallel_kernels_and_agree_with_the_parent(tmp_path):
    run = _run(CASE, tmp_path, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().endswith("ok")
    assert "Terminating" not in run.stderr


def test_a_child_forked_before_the_threading_layer_started_is_left_alone(tmp_path):
    """No layer in the parent: the child starts its own and keeps the parallel kernels."""
    run = _run(textwrap.dedent("""
        import os, sys
        import numpy as np
        from cvcore.nn.layers import maxpool2d_forward
        from kernels import _fork
        assert not _fork.openmp_started()
        pid = os.fork()
        if pid == 0:
            y = maxpool2d_forward(np.ones((2, 3, 8, 8), np.float32), 2)[0]
            kind = type(sys.modules["kernels.nn_pool"].maxpool2d_forward).__name__
            os._exit(0 if kind != "SerialTwin" and _fork.openmp_started() and y.sum() == 96
                     else 3)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
    """), tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == "0", run.stderr[-3000:]
