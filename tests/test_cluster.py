"""Scale-out, proven on one machine: a Ray cluster of a head and two worker nodes (`ray.cluster_utils.Cluster`,
Ray's own multi-node harness), each worker node with a scratch cache of its own and a node resource, and an S3
endpoint on localhost (moto's server) that pyarrow and Ray Train reach exactly as they reach AWS: endpoint and
credentials come from the environment only (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).

The storage-fault tests need no Ray and run in the fast tier; the cluster test is slow (a whole pipeline).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from test_pipeline import _config
from test_teach_e2e import KEY_ENV, Teacher, csqa16, openai_config  # noqa: F401 (csqa16: a fixture)

from tinythinker_ray import cli
from tinythinker_ray.config import dump_config
from tinythinker_ray.rundir import RunDir, workspace
from tinythinker_ray.storage import StorageError, atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's `ray` and `tinythinker`
BUCKET = "bucket"


@dataclass
class S3:
    endpoint: str
    client: object  # boto3's, for the test's own look into the bucket

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=BUCKET, Key=key)["Body"].read()

    def jsonl(self, key: str) -> list[dict]:
        return [json.loads(line) for line in self.read(key).splitlines() if line.strip()]

    def enforce_auth(self, on: bool) -> None:
        """moto checks credentials only when told to (then it knows no key at all: every one is refused)."""
        import httpx

        httpx.post(f"{self.endpoint}/moto-api/reset-auth", content="0" if on else "inf").raise_for_status()


@pytest.fixture(scope="module")
def s3():
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "test-key-id",
           "AWS_SECRET_ACCESS_KEY": "test-secret-key", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # before any Ray node starts: its workers inherit the endpoint and the credentials
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    try:
        yield S3(endpoint=env["AWS_ENDPOINT_URL"], client=client)
    finally:
        server.stop()
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


# ----- object storage faults (no Ray) ------------------------------------------------------------------------

def test_a_bucket_that_does_not_exist_is_one_line_before_any_work(s3, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TINYTHINKER_CACHE", str(tmp_path / "cache"))
    config = _config(tmp_path, "tiny-t5")
    assert cli.main(["run", "--config", str(config), "--run_dir", "s3://no-such-bucket/run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("tinythinker run: error: s3://no-such-bucket/run: bucket 'no-such-bucket' does not exist; "
                   "create it, or choose another --run_dir"), err
    assert "no-such-bucket" not in [b["Name"] for b in s3.client.list_buckets()["Buckets"]]  # none was made


def test_refused_credentials_are_one_line_before_any_work(s3, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TINYTHINKER_CACHE", str(tmp_path / "cache"))
    config = _config(tmp_path, "tiny-t5")
    s3.enforce_auth(True)
    try:
        rc = cli.main(["run", "--config", str(config), "--run_dir", f"s3://{BUCKET}/refused"])
    finally:
        s3.enforce_auth(False)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith(f"tinythinker run: error: s3://{BUCKET}/refused: storage unreachable or access refused")
    assert "AWS_ACCESS_KEY_ID" in err[0] and "test-secret-key" not in err[0]  # where credentials come from, not them
    assert not s3.keys("refused/")


def test_credentials_inside_a_uri_are_refused_and_never_echoed(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYTHINKER_CACHE", str(tmp_path / "cache"))
    with pytest.raises(StorageError) as refused:
        RunDir("s3://KEYID:SECRETVALUE@bucket/run").pull()
    assert "SECRETVALUE" not in str(refused.value) and "AWS_SECRET_ACCESS_KEY" in str(refused.value)


def test_endpoint_down_during_a_push_loses_nothing_and_the_rerun_pushes(s3, tmp_path, monkeypatch):
    monkeypatch.setenv("TINYTHINKER_CACHE", str(tmp_path / "cache"))
    uri = f"s3://{BUCKET}/pushed"
    with pytest.raises(StorageError) as failed:
        with workspace(uri) as run:
            atomic_write_text(run.teach.stats, '{"asked": 3}\n')  # a finished step's output
            monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # the store goes away before the push
    message = str(failed.value)
    assert "\n" not in message and f"failed at {uri}" in message, message
    assert run.teach.stats.read_text() == '{"asked": 3}\n'  # the mirror keeps what was done
    assert not s3.keys("pushed/")

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)  # back: the rerun's push uploads it and goes on
    with workspace(uri) as again:
        assert again.teach.stats.read_text() == '{"asked": 3}\n'
    assert s3.read("pushed/teach/stats.json") == b'{"asked": 3}\n'


def test_the_driver_follows_an_uploaded_metrics_file_from_where_it_left_off(s3, tmp_path):
    """A remote run's progress: each poll reads the uploaded metrics.jsonl from its offset on (a range read), and
    a row still being written waits for the next poll."""
    from tinythinker_ray.storage import read_from
    from tinythinker_ray.train.tracking import Follow

    rows = [json.dumps({"kind": "train", "step": i, "loss": 1.0 / i, "lr": 1e-3}) for i in (1, 2, 3)]
    key, uri = "follow/metrics.jsonl", f"s3://{BUCKET}/follow/metrics.jsonl"
    with Follow(tmp_path / "metrics.jsonl", "sft", 3, remote=uri) as follow:
        follow._poll()  # nothing uploaded yet: nothing shown, no error
        assert follow.offset == 0
        s3.client.put_object(Bucket=BUCKET, Key=key, Body=(rows[0] + "\n" + rows[1][:9]).encode())
        follow._poll()
        assert (follow.bar.n, follow.offset) == (1, len(rows[0]) + 1)
        s3.client.put_object(Bucket=BUCKET, Key=key, Body=("\n".join(rows) + "\n").encode())
        follow._poll()
        assert follow.bar.n == 3 and follow.offset == len("\n".join(rows)) + 1
    assert read_from(uri, len(rows[0]) + 1) == ("\n".join(rows[1:]) + "\n").encode()
    assert read_from(uri, 10_000) == b""


# ----- the whole pipeline on a three-node cluster, a worker node lost mid-training ---------------------------

@dataclass
class Nodes:
    address: str
    cluster: object  # ray.cluster_utils.Cluster
    root: Path
    dashboard: str  # the head's job API
    workers: dict = field(default_factory=dict)  # name -> ray._private.node.Node, the live worker nodes
    scratch: dict = field(default_factory=dict)  # name -> that node's own cache (TINYTHINKER_CACHE of its processes)
    ids: dict = field(default_factory=dict)  # node id -> name, of every node ever added (lost ones too)
    temps: list = field(default_factory=list)  # the nodes' own temp dirs, removed at the end

    def _temp(self, prefix: str) -> str:
        self.temps.append(_short_temp(prefix))
        return self.temps[-1]

    def add(self, name: str) -> None:
        """A worker node with a disk of its own: its cache and Ray's session folder (where a job's working dir
        is unpacked) are not shared with other nodes, as on real machines."""
        self.scratch[name] = self.root / name
        self.workers[name] = self.cluster.add_node(num_cpus=2, resources={f"node_{name}": 1},
                                                   temp_dir=self._temp(f"tt-cluster-{name}-"),
                                                   env_vars={"TINYTHINKER_CACHE": str(self.scratch[name])})
        self.ids[self.workers[name].node_id] = name
        self.cluster.wait_for_nodes()

    def lose(self, name: str) -> None:
        """The node dies with every process on it (SIGKILL, no draining), as a reclaimed spot instance does."""
        self.cluster.remove_node(self.workers.pop(name), allow_graceful=False)

    def name_of(self, node_id: str) -> str:
        return self.ids[node_id]

    def hosting(self, marker: str) -> str | None:
        """The worker node one of whose processes has `marker` in its command line (a Ray actor's title)."""
        import psutil

        raylets = {node.all_processes["raylet"][0].process.pid: name for name, node in self.workers.items()}
        for p in psutil.process_iter(["cmdline", "ppid"]):
            if marker in " ".join(p.info["cmdline"] or ()) and p.info["ppid"] in raylets:
                return raylets[p.info["ppid"]]
        return None


def _short_temp(prefix: str) -> str:
    """Ray's Unix sockets live under a node's temp dir and allow ~107 characters: a short folder in /tmp."""
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def nodes(s3, tmp_path_factory):
    import httpx
    from ray.cluster_utils import Cluster

    root = tmp_path_factory.mktemp("nodes")
    # The head runs no work (0 CPUs), as a cluster's head should: everything lands on the worker nodes, and job
    # drivers run on the head. Every node inherits this process's environment: the endpoint and credentials of
    # the bucket (s3 fixture) and the teacher's key (test_teach_e2e sets it at import), as cluster/node_env.sh
    # exports secrets before `ray start`. Ports with fixed defaults are chosen free: other Rays share the machine.
    dashboard, head_temp = _free_port(), _short_temp("tt-cluster-head-")
    # Cluster() writes the head's address to /tmp/ray/ray_current_cluster whatever the head's temp dir, and does
    # not create /tmp/ray: on a clean machine where no Ray ran yet, setup failed with FileNotFoundError.
    from ray._common.utils import get_ray_address_file

    os.makedirs(os.path.dirname(get_ray_address_file(None)), exist_ok=True)
    found = None
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "temp_dir": head_temp, "include_dashboard": True, "dashboard_host": "127.0.0.1",
        "dashboard_port": dashboard,
        "dashboard_agent_listen_port": _free_port(), "ray_client_server_port": _free_port(),
        "env_vars": {"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "TINYTHINKER_CACHE": str(root / "head")}})
    try:
        found = Nodes(address=cluster.address, cluster=cluster, root=root, dashboard=f"http://127.0.0.1:{dashboard}")
        for name in ("a", "b"):
            found.add(name)
        deadline = time.time() + 120
        while time.time() < deadline:  # the job API comes up seconds after the GCS
            try:
                if httpx.get(f"{found.dashboard}/api/jobs/", timeout=5).is_success:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        yield found
    finally:
        cluster.shutdown()
        for temp in [head_temp, *(found.temps if found else [])]:
            shutil.rmtree(temp, ignore_errors=True)


def _wait_for(what: str, check, proc: subprocess.Popen, log: Path, timeout: float = 600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (got := check()) is not None:
            return got
        if proc.poll() is not None:
            pytest.fail(f"the driver ended (rc {proc.returncode}) before {what}:\n{log.read_text()[-4000:]}")
        time.sleep(0.5)
    pytest.fail(f"no {what} within {timeout} s:\n{log.read_text()[-4000:]}")


@pytest.mark.slow
def test_a_sampler_node_lost_during_teach_costs_its_block_only(nodes, s3, csqa16, tmp_path, monkeypatch):  # noqa: F811
    """`tinythinker teach` on the cluster against an OpenAI-compatible teacher (two replicas, two questions a block),
    run_dir in the bucket; once a block is saved, the node of a sampler replica is killed. Ray Data restarts the
    replica on a live node and retries the lost block: every question is saved exactly once."""
    server = Teacher({q.stem: q.id for q in csqa16}, delay=0.5)
    uri = f"s3://{BUCKET}/teach-loss"
    cfg = openai_config(tmp_path, server.url, block_size=2, replicas=2, max_concurrency=1, retry_rounds=0)
    config = tmp_path / "teach.yaml"
    config.write_text(dump_config(cfg.model_copy(update={"run_dir": uri})))
    monkeypatch.setenv("TINYTHINKER_CACHE", str(tmp_path / "driver-cache"))
    replies = RunDir(uri).teach.replies  # the driver appends to its mirror as blocks come back, pushes at the end
    log = tmp_path / "driver.log"
    with open(log, "w") as out:
        driver = subprocess.Popen([sys.executable, "-m", "tinythinker_ray.cli", "teach", "--config", str(config)],
                                  cwd=ROOT, env=os.environ | {"RAY_ADDRESS": nodes.address}, stdout=out,
                                  stderr=subprocess.STDOUT)
    lost = None
    try:
        saved = _wait_for("a saved block", lambda: n if (n := _lines(replies)) >= 2 else None, driver, log)
        lost = _wait_for("a sampler replica", lambda: nodes.hosting("MapBatches(Replica)"), driver, log)
        nodes.lose(lost)
        driver.wait(timeout=600)
    finally:
        server.close()
        if driver.poll() is None:
            driver.kill()
        if lost:
            nodes.add(f"{lost}2")  # a fresh node in its place for the next test
    assert driver.returncode == 0, log.read_text()[-4000:]
    assert saved < len(csqa16)
    lines = s3.jsonl("teach-loss/teach/replies.jsonl")
    assert Counter(ln["qid"] for ln in lines) == {q.id: 1 for q in csqa16}  # none missing, none saved twice
    asked = server.ok["first"]
    assert sum(asked.values()) >= len(csqa16)
    print(f"lost node {lost} after {saved} saved replies; teacher requests: {sum(asked.values())} for "
          f"{len(csqa16)} questions ({sum(asked.values()) - len(csqa16)} asked again: the lost block)")


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


@pytest.mark.slow
def test_pipeline_on_a_cluster_with_an_s3_run_dir_survives_losing_the_training_node(nodes, s3, tmp_path):
    """`tinythinker run` submitted as a Ray job (its config only in the uploaded working dir) with
    run_dir=s3://bucket/run; once phase 1 has a registered checkpoint in the bucket, the node its Ray Train worker
    sits on is killed. The run goes on on the other node from that checkpoint and finishes; everything lands in
    the bucket, the driver's disk holds no checkpoint, and `ask` / `export` work from the bucket on a fresh cache."""
    work = tmp_path / "work"
    work.mkdir()
    config = _config(tmp_path, "tiny-t5")  # a built-in student: each node builds its own, nothing is shared
    cfg = yaml.safe_load(config.read_text())
    cfg["run_dir"] = f"s3://{BUCKET}/run"
    cfg.pop("cluster")  # joining a cluster: it declares its own CPUs
    cfg["train"]["max_failures"] = 1
    cfg["sft"] |= {"max_steps": 60, "eval_every": 20}  # time to lose a node between two checkpoints
    (work / "job.yaml").write_text(yaml.safe_dump(cfg))
    driver_cache = nodes.root / "head"  # the job's driver runs on the head, with the head's cache
    job_id = f"tt-run-{secrets.token_hex(4)}"
    log = tmp_path / "driver.log"
    with open(log, "w") as out:  # `ray job submit` follows the job's log until it ends, with its exit status
        driver = subprocess.Popen([str(BIN / "ray"), "job", "submit", "--address", nodes.dashboard, "--submission-id",
                                   job_id, "--working-dir", str(work), "--entrypoint-num-cpus", "0", "--",
                                   "tinythinker", "run", "--config", "job.yaml"],
                                  cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    try:
        def first_checkpoint():
            evals = [r for r in _remote_jsonl(s3, "run/sft/metrics.jsonl") if r.get("kind") == "eval"]
            snapshot = "run/sft/ray/sft/checkpoint_manager_snapshot.json"  # written once Ray registered one
            registered = s3.keys(snapshot) and b"checkpoint_" in s3.read(snapshot)
            return evals[0]["step"] if evals and registered else None

        at = _wait_for("a registered phase-1 checkpoint in the bucket", first_checkpoint, driver, log)
        rows = s3.jsonl("run/sft/metrics.jsonl")
        start = next(r for r in rows if r.get("kind") == "start")
        # the checkpoints that may be registered at the kill: each evaluation is one, and is uploaded just before
        evaluated = {r["step"] for r in rows if r.get("kind") == "eval"}
        lost = nodes.name_of(start["node"])
        survivor = (set(nodes.workers) - {lost}).pop()
        nodes.lose(lost)
        driver.wait(timeout=900)
    finally:
        if driver.poll() is None:
            driver.kill()
    said = log.read_text()
    assert driver.returncode == 0 and "succeeded" in said.lower(), said[-4000:]
    assert f"[run] report: s3://{BUCKET}/run/report.md" in said
    assert "Started a local Ray instance" not in said  # the job's driver joined the cluster

    # phase 1 restarted once, on the surviving node, from the checkpoint taken before the loss
    starts = [r for r in s3.jsonl("run/sft/metrics.jsonl") if r.get("kind") == "start"]
    assert [(nodes.name_of(r["node"]), r["resumed"]) for r in starts] == [(lost, False), (survivor, True)], starts
    resumed_at = starts[1]["step"]
    assert starts[0]["step"] == 0 and resumed_at in evaluated and resumed_at >= at, (starts, evaluated)
    trained = Counter(r["step"] for r in s3.jsonl("run/sft/metrics.jsonl") if r.get("kind") == "train")
    assert max(trained) == 60 and all(n == 1 for s, n in trained.items() if s <= resumed_at)  # none before it redone
    checkpoints = sorted({k.split("/")[4] for k in s3.keys("run/sft/ray/sft/checkpoint_")})
    assert len(checkpoints) >= 2, checkpoints
    print(f"lost node {lost} after the step-{at} checkpoint; resumed on {survivor} at step {resumed_at}; bucket checkpoints: "
          f"{checkpoints}")

    # every artifact of the run layout is in the bucket; no teacher request was sent twice
    keys = set(s3.keys("run/"))
    for want in ("manifest.json", "config.yaml", "report.md", "accuracy.png", "teach/replies.jsonl",
                 "teach/stats.json", "teach/recall.jsonl", "teach/analyze.jsonl", "teach/summarize.jsonl",
                 "sft/best/config.json", "sft/best/model.safetensors", "sft/metrics.jsonl", "sft/data.json",
                 "eval/valid-sft/summary.json", "eval/test-sft/summary.json", "eval/test-final/summary.json",
                 "reflect/iter_1/record.json", "reflect/iter_1/generations.jsonl", "reflect/iter_1/recall_pairs.jsonl"):
        assert f"run/{want}" in keys, want
    asked = Counter((r["qid"], r["round"]) for r in s3.jsonl("run/teach/replies.jsonl"))
    assert asked and max(asked.values()) == 1
    steps = json.loads(s3.read("run/manifest.json"))["steps"]
    assert {"run/teach", "run/sft", "run/reflect", "run/eval/test-final"} <= set(steps)
    assert steps["run/sft"]["best"] == f"s3://{BUCKET}/run/sft/best"  # recorded as any node reaches it
    record = json.loads(s3.read("run/reflect/iter_1/record.json"))
    assert record["reference"] == f"s3://{BUCKET}/run/sft/best"

    # nothing crossed through the driver's disk: its mirror holds no checkpoint, the workers wrote and fetched on
    # their own node's disk (the trained model and the phase-1 outputs under the survivor's cache)
    mirror = RunDir(cfg["run_dir"]).root.relative_to(RunDir(cfg["run_dir"]).root.parents[1])
    assert (driver_cache / mirror / "manifest.json").exists()
    assert not [p for p in driver_cache.rglob("checkpoint_*")]
    survivor_disk = nodes.scratch[survivor]
    assert (survivor_disk / "tiny-t5" / "config.json").exists()  # built there, not read from the driver's cache
    assert list(survivor_disk.glob("runs/*/metrics.jsonl"))  # the restarted worker's own outputs
    assert list(survivor_disk.glob("remote/*/*/config.json"))  # sft/best fetched from the bucket by node workers

    # ask and export straight from the bucket, on a fresh cache
    fresh = os.environ | {"TINYTHINKER_CACHE": str(tmp_path / "fresh-cache")}
    ask = subprocess.run([sys.executable, "-m", "tinythinker_ray.cli", "ask", "--model", f"s3://{BUCKET}/run",
                          "--sampler.backend", "hf", "--student.max_new_tokens", "8", "Is ice cold?"],
                         cwd=ROOT, env=fresh, capture_output=True, text=True, timeout=300)
    assert ask.returncode == 0, ask.stdout[-2000:] + ask.stderr[-2000:]
    assert "student:" in ask.stdout and "answer" in ask.stdout.lower()
    export = subprocess.run([sys.executable, "-m", "tinythinker_ray.cli", "export", "--run_dir", f"s3://{BUCKET}/run"],
                            cwd=ROOT, env=fresh, capture_output=True, text=True, timeout=300)
    assert export.returncode == 0, export.stdout[-2000:] + export.stderr[-2000:]
    assert {"run/export/config.json", "run/export/README.md", "run/export/model.safetensors"} <= set(s3.keys("run/export/"))


def _remote_jsonl(s3: S3, key: str) -> list[dict]:
    try:
        return s3.jsonl(key)
    except s3.client.exceptions.NoSuchKey:
        return []
