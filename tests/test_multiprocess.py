"""Data-parallel training on 2 local processes equals 1 process on the global batch; it survives a kill.

Runs the two example scripts as real processes talking over localhost sockets
(free ports picked at run time): `examples/train_multiworker_tf.py`
(TensorFlow, `MultiWorkerMirroredStrategy` with RING collectives, a custom
`strategy.run` loop, `tf.train.CheckpointManager`) and
`examples/train_multiprocess_jax.py` (JAX, `keras.distribution.initialize` +
`DataParallel`, `model.fit`, `keras_norms.distributed.BackupAndRestore`). The
reference is the same script in one process (the whole global batch on one
device): after 2 epochs, weights and moving statistics agree within 1e-5.
Then one of the two processes is killed during training, the job is
restarted (as a cluster scheduler would: every process again), and it ends
with the uninterrupted run's weights, resuming after the last finished epoch.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
TRAINING = ["--steps-per-epoch", "4", "--epochs", "2"]
TIMEOUT = 240
PORT_TAKEN = ("Address already in use", "address already in use", "Failed to bind",
              "Could not start gRPC server")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def _environment(**extra) -> dict:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def _tensorflow_environments(workers: int) -> list[dict]:
    ports = [_free_port() for _ in range(workers)]
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    return [_environment(KERAS_BACKEND="tensorflow",
                         TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}))
            for i in range(workers)]


def _jax_environments(processes: int) -> list[dict]:
    address = f"localhost:{_free_port()}"
    return [_environment(KERAS_BACKEND="jax", KERAS_DISTRIBUTION_JOB_ADDRESSES=address,
                         KERAS_DISTRIBUTION_NUM_PROCESSES=str(processes),
                         KERAS_DISTRIBUTION_PROCESS_ID=str(i))
            for i in range(processes)]


class _Job:
    """The processes of one training job; every one is killed if the job fails or times out."""

    def __init__(self, script: Path, environments: list[dict], args: list[str], folder: Path):
        self.processes = []
        for index, environment in enumerate(environments):
            log = open(folder / f"process-{index}.log", "w")  # noqa: SIM115  (closed in wait)
            self.processes.append((subprocess.Popen([sys.executable, str(script), *args], env=environment,
                                                    stdout=log, stderr=subprocess.STDOUT, cwd=folder), log))
        self.folder = folder

    def kill(self, index: int | None = None) -> None:
        for i, (process, _) in enumerate(self.processes):
            if (index is None or i == index) and process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait()

    def logs(self) -> str:
        return "\n".join((self.folder / f"process-{i}.log").read_text()[-3000:]
                         for i in range(len(self.processes)))

    def wait(self) -> None:
        """Waits for every process; on a failure or a timeout kills the others, and raises or skips."""
        deadline = time.monotonic() + TIMEOUT
        try:
            for process, _ in self.processes:
                process.wait(timeout=max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the job did not finish within {TIMEOUT} s:\n{self.logs()}")
        finally:
            for _, log in self.processes:
                log.close()
        if any(process.returncode for process, _ in self.processes):
            self.kill()
            logs = self.logs()
            if any(text in logs for text in PORT_TAKEN):
                pytest.skip("a port picked for the job was taken by another program meanwhile")
            pytest.fail(f"a process failed:\n{logs}")


def _run(script, environments, args, folder) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    job = _Job(script, environments, args, folder)
    job.wait()


def _weights(path) -> dict:
    with np.load(path) as saved:
        return {key: saved[key] for key in saved.files}


def _assert_same_weights(results, reference, what):
    assert set(results) == set(reference)
    moving = [key for key in reference if "moving_" in key]
    assert moving or "group" in what, sorted(reference)
    for key in reference:
        if key != "resumed_at":
            np.testing.assert_allclose(results[key], reference[key], atol=1e-5, rtol=1e-5,
                                       err_msg=f"{what}: {key}")


def _kill_after_first_epoch(script, environments, args, folder, finished_epochs) -> int:
    """Starts the job, kills process 1 once an epoch is checkpointed, then the rest; returns epochs saved."""
    folder.mkdir(parents=True, exist_ok=True)
    job = _Job(script, environments, args, folder)
    deadline = time.monotonic() + TIMEOUT
    try:
        while finished_epochs() < 1:
            if time.monotonic() > deadline or any(p.poll() is not None for p, _ in job.processes):
                pytest.fail(f"no epoch was checkpointed before the kill:\n{job.logs()}")
            time.sleep(0.05)
        job.kill(1)  # one worker dies mid-training ...
        saved = finished_epochs()
        time.sleep(1.0)
        job.kill()  # ... and the job with it: a cluster scheduler then restarts every process
    finally:
        job.kill()
        for _, log in job.processes:
            log.close()
    assert saved == 1, saved  # the first of the 2 epochs: the restarted job trains the second
    return saved


# ----------------------------------------------------------------------------- TensorFlow


def _tensorflow_epochs(checkpoints: Path):
    def finished():
        return len(list(checkpoints.glob("ckpt-*.index")))  # one per finished epoch (max_to_keep=2 >= 2)
    return finished


def test_tensorflow_two_workers_killed_and_restarted_end_as_one_process_on_the_global_batch(tmp_path):
    # Batch norm, whose statistics are synchronized across the workers: two workers, one of them
    # killed after the first checkpointed epoch and the job restarted, end where one process on the
    # global batch without a kill ends.
    script = EXAMPLES / "train_multiworker_tf.py"
    training = [*TRAINING, "--norm", "batch"]
    _run(script, [_environment(KERAS_BACKEND="tensorflow")],
         [*training, "--checkpoint-dir", str(tmp_path / "one" / "ckpt"), "--out", str(tmp_path / "one.npz")],
         tmp_path / "one")
    checkpoints = tmp_path / "killed" / "ckpt"
    args = [*training, "--checkpoint-dir", str(checkpoints), "--out", str(tmp_path / "resumed.npz")]
    saved = _kill_after_first_epoch(script, _tensorflow_environments(2), [*args, "--step-delay", "0.3"],
                                    tmp_path / "killed", _tensorflow_epochs(checkpoints))
    _run(script, _tensorflow_environments(2), args, tmp_path / "restarted")
    resumed = _weights(tmp_path / "resumed.npz")
    assert int(resumed["resumed_at"]) >= saved, (int(resumed["resumed_at"]), saved)
    _assert_same_weights(resumed, _weights(tmp_path / "one.npz"), "tensorflow batch, killed and restarted")
    # Only the chief's checkpoint is kept: worker 1 deleted its temporary one.
    assert sorted(p.name for p in (tmp_path / "restarted").iterdir() if p.is_dir()) == []
    assert sorted(p.name for p in (tmp_path / "killed").iterdir() if p.is_dir()) == ["ckpt"]


# ----------------------------------------------------------------------------- JAX


def _jax_epochs(backup: Path):
    def finished():
        try:
            return json.loads((backup / "training_metadata.json").read_text())["epoch"]
        except (OSError, ValueError, KeyError):
            return 0
    return finished


def test_jax_two_processes_killed_and_restarted_end_as_one_process_on_the_global_batch(tmp_path):
    # Two processes, one of them killed after the first backed-up epoch and the job restarted, end
    # where one process on the global batch without a kill ends.
    script = EXAMPLES / "train_multiprocess_jax.py"
    _run(script, [_environment(KERAS_BACKEND="jax")],
         [*TRAINING, "--checkpoint-dir", str(tmp_path / "one" / "ckpt"), "--out", str(tmp_path / "one.npz")],
         tmp_path / "one")
    backup = tmp_path / "killed" / "ckpt"
    args = [*TRAINING, "--checkpoint-dir", str(backup), "--out", str(tmp_path / "resumed.npz")]
    saved = _kill_after_first_epoch(script, _jax_environments(2), [*args, "--step-delay", "0.3"],
                                    tmp_path / "killed", _jax_epochs(backup))
    _run(script, _jax_environments(2), args, tmp_path / "restarted")
    for index in range(2):
        assert f"process {index} of 2" in (tmp_path / "restarted" / f"process-{index}.log").read_text()
    resumed = _weights(tmp_path / "resumed.npz")
    assert int(resumed["resumed_at"]) >= saved, (int(resumed["resumed_at"]), saved)
    _assert_same_weights(resumed, _weights(tmp_path / "one.npz"), "jax, killed and restarted")
