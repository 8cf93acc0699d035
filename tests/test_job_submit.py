"""Jobs reach the trainer the way they reach a cluster: a real Ray head started here (`ray start --head`, token
auth on, as Ray 2.60 does), real `ray job submit` and `jobs/submit.py` submissions whose working dir is uploaded,
and the job's own output checked. (The whole pipeline as a job, on a three-node cluster, is
test_cluster.py's.) The head is this module's alone: it is stopped by its own pid together with
the processes it started, never with a blind `ray stop` (other tests on this machine run their own Rays).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tinythinker_ray.data.loaders import load_benchmark

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's `ray` and `tinythinker`
JOB_TIMEOUT = 240


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Head:
    address: str  # the dashboard, where jobs are submitted
    env: dict  # a client environment: the venv first on PATH, token auth on, this head's token

    def ray(self, *args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "ray"), *args], env=env or self.env, capture_output=True, text=True,
                              timeout=timeout)


def _wait_ready(proc: subprocess.Popen, address: str, token: str, log: Path, timeout: float = 180) -> None:
    """Until the job API answers an authenticated request (the dashboard comes up seconds after the GCS)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"`ray start --head` exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{address}/api/jobs/", headers={"Authorization": f"Bearer {token}"}, timeout=5).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    pytest.fail(f"the Ray head did not answer within {timeout}s:\n{log.read_text()[-3000:]}")


def _die_with_pytest() -> None:
    """In the head's process before exec: SIGTERM it if pytest itself dies (killed, out of memory), so even then
    `ray start --block` stops what it started instead of outliving the test run (Linux PR_SET_PDEATHSIG)."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def _stop(proc: subprocess.Popen) -> None:
    """Stop this head and everything it started, and nothing else."""
    import psutil

    try:
        family = psutil.Process(proc.pid).children(recursive=True)  # raylet, GCS, dashboard, workers, job drivers
    except psutil.NoSuchProcess:
        family = []
    if proc.poll() is None:
        proc.terminate()  # `ray start --block` drains the node, then stops the processes it started
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    _, alive = psutil.wait_procs(family, timeout=15)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


@pytest.fixture(scope="module")
def ray_head():
    # Short and private: Ray's socket paths live under --temp-dir (Unix sockets allow ~107 characters), and
    # ray_current_cluster is written there rather than in /tmp/ray, so no other Ray on this machine sees us.
    temp = Path(tempfile.mkdtemp(prefix="tt-head-", dir="/tmp"))
    token = secrets.token_hex(32)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_API_SERVER", "RAY_AUTH"))}
    # Ray 2.60: a `ray start` head turns token auth on when RAY_AUTH_MODE=token (or a ~/.ray/auth_token exists);
    # every process, client included, reads the token from RAY_AUTH_TOKEN before RAY_AUTH_TOKEN_PATH and
    # ~/.ray/auth_token -- the home folder is left alone.
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token,
               RAY_USAGE_STATS_ENABLED="0")
    dashboard = _free_port()
    log = temp / "head.log"
    # 4 logical CPUs on 2 cores: a `run` job holds its driver, a sampler or Train worker and Ray Data tasks at once
    cmd = [str(BIN / "ray"), "start", "--head", "--block", f"--temp-dir={temp}", "--num-cpus=4",
           f"--port={_free_port()}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
           # ports with fixed defaults (10001, 52365) would collide with a second Ray on this machine
           f"--ray-client-server-port={_free_port()}", f"--dashboard-agent-listen-port={_free_port()}",
           "--disable-usage-stats"]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_die_with_pytest if sys.platform == "linux" else None)
    try:
        address = f"http://127.0.0.1:{dashboard}"
        _wait_ready(proc, address, token, log)
        yield Head(address=address, env=env)
    finally:
        _stop(proc)
        shutil.rmtree(temp, ignore_errors=True)


def _ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


def _counts(splits) -> str:
    return f"{len(splits.train)} / {len(splits.valid)} / {len(splits.test)}"


def test_the_job_api_refuses_requests_without_the_token(ray_head):
    import httpx

    jobs = f"{ray_head.address}/api/jobs/"
    assert httpx.get(jobs, timeout=10).status_code == 401
    assert httpx.get(jobs, headers={"Authorization": "Bearer not-the-token"}, timeout=10).status_code == 403
    assert httpx.get(jobs, headers={"Authorization": f"Bearer {ray_head.env['RAY_AUTH_TOKEN']}"}, timeout=10).is_success


def _spec(tmp_path: Path, runs: Path) -> Path:
    """A job spec as jobs/*.yaml are written: relative working dir, env_vars read by the entrypoint's shell."""
    (tmp_path / "job.yaml").write_text(yaml.safe_dump({"data": {"name": "csqa"}}))
    spec = tmp_path / "prepare.yaml"
    spec.write_text(yaml.safe_dump({
        "entrypoint": 'tinythinker data prepare --config job.yaml --run_dir "$TT_RUNS/prep"',
        "runtime_env": {"working_dir": ".", "env_vars": {"TT_RUNS": str(runs)}},
        "entrypoint_num_cpus": 1,
        "metadata": {"test": "submit.py"},
    }))
    return spec


def _submit_py(head: Head, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "jobs" / "submit.py"), *args], env=head.env,
                          capture_output=True, text=True, timeout=JOB_TIMEOUT, cwd=ROOT)


def test_submit_py_sends_a_spec_file_and_follows_it(ray_head, tmp_path):
    runs = tmp_path / "runs"
    spec = _spec(tmp_path, runs)
    # The words after `--` override the spec's config (csqa -> obqa): appended to the entrypoint, quoted.
    done = _submit_py(ray_head, str(spec), "--address", ray_head.address, "--follow", "--", "--data.name", "obqa")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    expected = load_benchmark("obqa")
    assert "SUCCEEDED" in done.stdout and _counts(expected) in done.stdout
    assert _ids(runs / "prep" / "data" / "test.jsonl") == [q.id for q in expected.test]


def test_submit_py_exits_nonzero_when_the_job_fails(ray_head, tmp_path):
    spec = _spec(tmp_path, tmp_path / "runs")
    failed = _submit_py(ray_head, str(spec), "--address", ray_head.address, "--follow", "--",
                        "--data.name", "nosuchbench")
    assert failed.returncode == 1, failed.stdout[-3000:] + failed.stderr[-3000:]
    assert "FAILED" in failed.stdout and "nosuchbench" in failed.stdout  # our error, streamed from the job's log


@pytest.mark.parametrize("auth, says", [
    ({}, "requires a token and this side sent none: export RAY_AUTH_MODE=token"),
    ({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "not-the-token-" * 3}, "refused this side's token"),
])
def test_submit_py_says_which_side_needs_the_token(ray_head, tmp_path, auth, says):
    env = {k: v for k, v in ray_head.env.items() if not k.startswith("RAY_AUTH")} | {"HOME": str(tmp_path)} | auth
    r = subprocess.run([sys.executable, str(ROOT / "jobs" / "submit.py"), str(_spec(tmp_path, tmp_path / "runs")),
                        "--address", ray_head.address], env=env, capture_output=True, text=True, timeout=JOB_TIMEOUT)
    assert r.returncode == 2 and r.stdout == "" and "Traceback" not in r.stderr, r.stderr[-2000:]
    last = r.stderr.splitlines()[-1]
    assert last.startswith(f"submit.py: error: the Ray cluster at {ray_head.address} {says}"), r.stderr[-2000:]
    assert last.endswith("RAY_AUTH_TOKEN (or a file named by RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token)")
