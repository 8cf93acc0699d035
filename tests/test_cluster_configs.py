"""The ways users reach the trainer on clusters, checked offline: preset configs, job specs, Ray autoscaler
configs (against Ray's own schema and `ray up`'s own preparation), KubeRay manifests (against the fields of
KubeRay's ray.io/v1 types), and that every command they run is a real `tinythinker` command whose config loads.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tinythinker_ray import cli
from tinythinker_ray.config import Config, load_config
from tinythinker_ray.models import BUILTINS

ROOT = Path(__file__).resolve().parents[1]
PRESETS = sorted((ROOT / "tinythinker_ray" / "configs").glob("*.yaml"))
GPU_PRESETS = [p for p in PRESETS if p.stem != "local-tiny"]
JOB_SPECS = sorted((ROOT / "jobs").glob("*.yaml"))
CLOUDS = {"aws": ROOT / "cluster" / "aws.yaml", "gcp": ROOT / "cluster" / "gcp.yaml"}
KUBERAY = ROOT / "cluster" / "kuberay"
IMAGE_ROOT = "/app/"  # where cluster/Dockerfile puts the repository in the KubeRay image

# The paper's teacher settings per benchmark: (shots, samples per question).
PAPER_TEACHER = {"csqa": (8, 8), "obqa": (7, 4), "strategyqa": (8, 4)}

# Fields of KubeRay's ray.io/v1 types (ray-operator/apis/ray/v1/raycluster_types.go, rayjob_types.go);
# the CRDs are not in any Python package, so a typo (`minReplica`) is caught here or never before `kubectl`.
RAY_CLUSTER_SPEC = {"headGroupSpec", "workerGroupSpecs", "rayVersion", "enableInTreeAutoscaling",
                    "autoscalerOptions", "headServiceAnnotations", "suspend", "gcsFaultToleranceOptions",
                    "managedBy"}
HEAD_GROUP_SPEC = {"serviceType", "headService", "enableIngress", "rayStartParams", "template"}
WORKER_GROUP_SPEC = {"groupName", "replicas", "minReplicas", "maxReplicas", "numOfHosts", "rayStartParams",
                     "template", "scaleStrategy", "suspend", "idleTimeoutSeconds"}
AUTOSCALER_OPTIONS = {"resources", "image", "imagePullPolicy", "env", "envFrom", "volumeMounts",
                      "securityContext", "idleTimeoutSeconds", "upscalingMode", "version"}
RAY_JOB_SPEC = {"activeDeadlineSeconds", "backoffLimit", "rayClusterSpec", "submitterPodTemplate", "metadata",
                "clusterSelector", "submitterConfig", "managedBy", "deletionStrategy", "entrypoint",
                "runtimeEnvYAML", "jobId", "submissionMode", "entrypointResources", "entrypointNumCpus",
                "entrypointNumGpus", "ttlSecondsAfterFinished", "shutdownAfterJobFinishes", "suspend", "schedule"}

# What credentials look like: OpenAI / Anthropic keys, AWS access key ids, HF / GitHub tokens, private keys.
SECRET = re.compile(r"sk-[A-Za-z0-9_-]{16,}|AKIA[0-9A-Z]{16}|hf_[A-Za-z0-9]{20,}|gh[pousr]_[A-Za-z0-9]{20,}"
                    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----")
SECRET_NAME = re.compile(r"(?:^|_)(?:KEY|TOKEN|SECRET|PASSWORD)(?:_|$)")  # OPENAI_API_KEY, HF_TOKEN, not TOKENIZERS


def _submit_module():
    """jobs/submit.py (a script, not a package module): its load_spec is what a submission sends."""
    spec = importlib.util.spec_from_file_location("tinythinker_jobs_submit", ROOT / "jobs" / "submit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _yaml(path: Path):
    return yaml.safe_load(path.read_text())


def parse_command(entrypoint: str, root: Path) -> tuple[str, Config, Path]:
    """A job's shell command -> (subcommand, the config it runs with, the config file), as `tinythinker` reads it."""
    words = shlex.split(entrypoint)
    assert words[0] == "tinythinker", f"entrypoint does not run tinythinker: {entrypoint}"
    command, rest = words[1], words[2:]
    assert command in cli.COMMANDS, f"'tinythinker {command}' is not a command ({', '.join(cli.COMMANDS)})"
    assert "--config" in rest, f"entrypoint names no --config: {entrypoint}"
    i = rest.index("--config")
    config_file = root / rest[i + 1].removeprefix(IMAGE_ROOT)
    del rest[i:i + 2]
    overrides, _ = cli.split_overrides(rest, cli.COMMANDS[command][2])
    assert config_file.is_file(), f"{config_file} does not exist"
    return command, load_config(config_file, overrides), config_file


def _data_reaches_the_cluster(cfg: Config, uploaded: Path | None) -> None:
    """The driver on the cluster can read data.path: the embedded sample, object storage, or a relative folder
    inside the working dir the job uploads (which Ray sends without its .gitignored files)."""
    path = cfg.data.path
    if path is None or "://" in path:
        return
    assert uploaded is not None, f"data.path {path} is read on the cluster, but nothing uploads it there"
    assert not Path(path).is_absolute() and ".." not in Path(path).parts, f"{path} is outside the working dir"
    ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=uploaded, capture_output=True)
    assert ignored.returncode == 1, f"{path} is .gitignored: Ray's working_dir upload leaves it out"


def _bundles(cfg: Config) -> list[tuple[str, float, float]]:
    """Every (what, CPUs, GPUs) a preset asks Ray for in one piece: an engine replica or a training worker."""
    out = [("train worker", cfg.train.cpus_per_worker, cfg.train.gpus_per_worker if cfg.train.use_gpu else 0)]
    for name in ("teacher", "sampler"):
        s = getattr(cfg, name)
        out.append((f"{name} replica", s.cpus_per_replica, s.gpus_per_replica))
    return out


def _worker_shapes_autoscaler(cfg: dict) -> dict[str, tuple[float, float]]:
    types = cfg["available_node_types"]
    return {n: (t["resources"].get("CPU", 0), t["resources"].get("GPU", 0))
            for n, t in types.items() if n != cfg["head_node_type"]}


def _worker_shapes_kuberay(spec: dict) -> dict[str, tuple[float, float]]:
    shapes = {}
    for group in spec["workerGroupSpecs"]:
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        shapes[group["groupName"]] = (float(limits["cpu"]), float(limits.get("nvidia.com/gpu", 0)))
    return shapes


def _head_resources_kuberay(spec: dict) -> dict:
    """KubeRay passes rayStartParams.resources to `ray start --resources` through a shell: JSON inside quotes."""
    raw = spec["headGroupSpec"]["rayStartParams"].get("resources")
    return json.loads(json.loads(raw)) if raw else {}


def _all_shapes() -> dict[str, dict[str, tuple[float, float]]]:
    shapes = {name: _worker_shapes_autoscaler(_yaml(path)) for name, path in CLOUDS.items()}
    shapes["kuberay/raycluster"] = _worker_shapes_kuberay(_yaml(KUBERAY / "raycluster.yaml")["spec"])
    shapes["kuberay/rayjob"] = _worker_shapes_kuberay(_yaml(KUBERAY / "rayjob.yaml")["spec"]["rayClusterSpec"])
    return shapes


# ----- preset configs ------------------------------------------------------------------------------------------

def test_the_presets_exist():
    assert {p.stem for p in PRESETS} >= {"local-tiny", "csqa-t5-base", "obqa-qwen-0.5b", "strategyqa-smollm2"}


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_loads_and_is_consistent(path):
    cfg = load_config(path)
    t = cfg.teacher
    assert t.augment <= t.samples, "more rationales kept than sampled"
    for name in ("teacher", "sampler"):
        s = getattr(cfg, name)
        if s.backend == "vllm" and s.gpus_per_replica:
            assert s.tensor_parallel_size == s.gpus_per_replica, f"{name}: one vLLM engine spans its replica's GPUs"
        if s.backend == "openai":
            assert re.fullmatch(r"[A-Z_][A-Z0-9_]*", s.api_key_env), f"{name}.api_key_env names a variable"
    if "t5" in cfg.student.model.lower():
        assert cfg.sampler.backend != "vllm", "vLLM does not run encoder-decoder (T5) students"
    assert Path(cfg.run_dir).name == path.stem, "each preset writes its own run folder"


@pytest.mark.parametrize("path", GPU_PRESETS, ids=lambda p: p.stem)
def test_gpu_presets_follow_the_paper(path):
    cfg = load_config(path)
    assert (cfg.teacher.shots, cfg.teacher.samples) == PAPER_TEACHER[cfg.data.name]
    assert (cfg.sft.interval, cfg.sft.lr, cfg.reflect.iterations) == (100, 5e-4, 5)
    assert cfg.train.use_gpu and cfg.train.bf16 and cfg.train.zero_stage == 2
    assert cfg.teacher.backend in ("vllm", "openai")


def test_presets_as_the_brief_names_them():
    csqa, obqa = load_config(ROOT / "tinythinker_ray/configs/csqa-t5-base.yaml"), load_config(
        ROOT / "tinythinker_ray/configs/obqa-qwen-0.5b.yaml")
    assert (csqa.student.model, csqa.teacher.backend, csqa.teacher.model) == ("google-t5/t5-base", "openai", "gpt-4o")
    assert csqa.teacher.api_key_env == "OPENAI_API_KEY" and csqa.train.num_workers == 8
    assert obqa.student.model == "Qwen/Qwen2.5-0.5B-Instruct" and obqa.sampler.backend == "vllm"
    assert (obqa.teacher.model, obqa.teacher.tensor_parallel_size, obqa.teacher.gpus_per_replica) == (
        "Qwen/Qwen2.5-72B-Instruct", 4, 4)


def test_local_tiny_runs_without_gpu_or_network():
    cfg = load_config(ROOT / "tinythinker_ray/configs/local-tiny.yaml")
    assert not cfg.train.use_gpu and cfg.teacher.gpus_per_replica == 0 and cfg.sampler.gpus_per_replica == 0
    assert cfg.student.model in BUILTINS and cfg.teacher.model in BUILTINS
    assert cfg.teacher.backend != "openai" and cfg.data.path is None  # the embedded sample


@pytest.mark.parametrize("path", GPU_PRESETS, ids=lambda p: p.stem)
def test_every_preset_bundle_fits_a_node_of_every_cluster(path):
    """A replica asking for more GPUs/CPUs than any worker type offers would wait forever for a node."""
    cfg = load_config(path)
    for cluster, shapes in _all_shapes().items():
        for what, cpus, gpus in _bundles(cfg):
            assert any(cpus <= c and gpus <= g for c, g in shapes.values()), (
                f"{path.stem}: a {what} ({cpus} CPU, {gpus} GPU) fits no worker type of {cluster}: {shapes}")


# ----- job specs -----------------------------------------------------------------------------------------------

def test_every_preset_has_a_job_spec():
    assert {p.stem for p in JOB_SPECS} == {p.stem for p in PRESETS}


@pytest.mark.parametrize("path", JOB_SPECS, ids=lambda p: p.stem)
def test_job_spec_runs_its_preset_on_the_cluster(path):
    spec = _submit_module().load_spec(path)
    working_dir = Path(spec["runtime_env"]["working_dir"])
    assert working_dir == ROOT, "a spec uploads the repository its config paths are relative to"
    command, cfg, config_file = parse_command(spec["entrypoint"], working_dir)
    assert command == "run" and config_file.stem == path.stem
    # Inside a Ray job the driver must join the cluster: "local" would start a second, GPU-less Ray on the head.
    assert cfg.cluster.address == "auto"
    assert cfg.run_dir.endswith(f"/{path.stem}") and "TINYTHINKER_RUNS" in cfg.run_dir
    _data_reaches_the_cluster(cfg, uploaded=working_dir)
    env_vars = spec["runtime_env"].get("env_vars", {})
    assert all(isinstance(v, str) for v in env_vars.values()), "Ray accepts only string env_vars"
    assert not [k for k in env_vars if SECRET_NAME.search(k)], "secrets come from the cluster"
    assert spec["entrypoint_num_cpus"] >= 1


def test_cluster_job_specs_pin_the_driver_to_a_resource_every_head_offers():
    heads = {name: _yaml(p)["available_node_types"][_yaml(p)["head_node_type"]]["resources"]
             for name, p in CLOUDS.items()}
    heads["kuberay"] = _head_resources_kuberay(_yaml(KUBERAY / "raycluster.yaml")["spec"])
    rayjob = _yaml(KUBERAY / "rayjob.yaml")["spec"]
    heads["kuberay/rayjob"] = _head_resources_kuberay(rayjob["rayClusterSpec"])
    asks = [(p.stem, _submit_module().load_spec(p).get("entrypoint_resources") or {}) for p in JOB_SPECS]
    asks.append(("rayjob", json.loads(rayjob["entrypointResources"])))
    for name, wanted in asks:
        if name == "local-tiny":
            assert not wanted, "a laptop's `ray start --head` offers no custom resources"
            continue
        assert wanted, f"{name}: the driver could land on a spot GPU node"
        for head, offered in heads.items():
            assert all(offered.get(k, 0) >= v for k, v in wanted.items()), f"{name} never schedules on {head}"


def test_load_spec_appends_words_and_rejects_unknown_keys(tmp_path):
    submit = _submit_module()
    spec = submit.load_spec(ROOT / "jobs" / "local-tiny.yaml", ["--sft.lr", "3e-4", "a b"])
    assert spec["entrypoint"].endswith(" --sft.lr 3e-4 'a b'")
    bad = tmp_path / "bad.yaml"
    bad.write_text("entrypoint: tinythinker run\nentrypoint_cpus: 1\n")
    with pytest.raises(SystemExit, match="entrypoint_cpus"):
        submit.load_spec(bad)


def _submit_py(env: dict, address: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_API_SERVER", "RAY_AUTH"))}
    return subprocess.run([sys.executable, str(ROOT / "jobs" / "submit.py"), str(ROOT / "jobs" / "local-tiny.yaml"),
                           "--address", address], env=base | env, capture_output=True, text=True, timeout=120)


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_submit_py_in_token_mode_without_a_token_says_so_in_one_line(tmp_path):
    """Ray raises this on the client before any request, so no head is needed; a head with token auth (401,
    403) is tests/test_job_submit.py's."""
    address = _closed_port()
    r = _submit_py({"RAY_AUTH_MODE": "token", "HOME": str(tmp_path)}, address)  # no ~/.ray/auth_token there
    assert r.returncode == 2 and r.stdout == "", r.stderr[-2000:]
    assert r.stderr.splitlines()[-1].startswith("submit.py: error: this side has RAY_AUTH_MODE=token but no token")
    assert "Traceback" not in r.stderr and "unset RAY_AUTH_MODE" in r.stderr
    r = _submit_py({"HOME": str(tmp_path)}, address)
    assert r.returncode == 2 and r.stderr.splitlines()[-1] == (f"submit.py: error: no Ray dashboard answers at "
                                                               f"{address}: is the head up (and its port 8265 "
                                                               "forwarded)?")


@pytest.mark.parametrize("status, body, says", [
    (401, "Unauthorized: Missing authentication token",
     "the Ray cluster at http://h:8265 requires a token and this side sent none: export RAY_AUTH_MODE=token"),
    (403, "Forbidden: Invalid authentication token",
     "the Ray cluster at http://h:8265 refused this side's token: it is not the head's"),
])
def test_submit_py_maps_the_heads_answers_to_which_side_needs_the_token(status, body, says):
    """The exception JobSubmissionClient raises for a 401 / 403, made by Ray's own formatter."""
    from ray._private.authentication.http_token_authentication import format_authentication_http_error
    from ray.exceptions import AuthenticationError

    line = _submit_module().client_error(AuthenticationError(format_authentication_http_error(status, body)),
                                         "http://h:8265")
    assert line.startswith(says) and "\n" not in line


# ----- Ray autoscaler configs ----------------------------------------------------------------------------------

@pytest.mark.parametrize("cloud", CLOUDS)
def test_autoscaler_config_passes_rays_schema_and_preparation(cloud):
    import jsonschema
    import ray
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = _yaml(CLOUDS[cloud])
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(config, schema)
    # What `ray up` does with the file before it talks to the cloud: merge the provider defaults, then validate.
    validate_config(prepare_config(copy.deepcopy(config)))
    assert config["provider"]["type"] == cloud
    assert f"rayproject/ray:{ray.__version__}-" in config["docker"]["image"], "cluster Ray = client Ray"


@pytest.mark.parametrize("cloud", CLOUDS)
def test_autoscaler_node_types(cloud):
    config = _yaml(CLOUDS[cloud])
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"]["GPU"] == 0, "the head runs drivers only"
    workers = {n: t for n, t in types.items() if n != config["head_node_type"]}
    assert {"sampler_4gpu", "trainer_8gpu"} <= set(workers)
    for name, t in workers.items():
        assert 0 <= t["min_workers"] <= t["max_workers"] <= config["max_workers"], name
        assert isinstance(t["resources"]["GPU"], int) and t["resources"]["GPU"] > 0, name
        node = t["node_config"]
        spot = (node.get("InstanceMarketOptions", {}).get("MarketType") == "spot" if cloud == "aws" else
                node["scheduling"].get("provisioningModel") == "SPOT" or node["scheduling"].get("preemptible", False))
        assert spot == name.startswith("sampler"), f"{name}: sampling on spot, training on-demand"
        if cloud == "gcp":
            # The Compute API wants an object; Ray's example files write a list, which the API rejects.
            assert isinstance(node["scheduling"], dict) and node["scheduling"]["onHostMaintenance"] == "TERMINATE"
    assert sum(t["min_workers"] for t in workers.values()) <= config["max_workers"]


@pytest.mark.parametrize("cloud", CLOUDS)
def test_autoscaler_nodes_install_this_checkout_and_load_secrets(cloud):
    config = _yaml(CLOUDS[cloud])
    [(remote, local)] = config["file_mounts"].items()
    assert (ROOT / local / "pyproject.toml").is_file(), "`ray up` from the repository root mounts the checkout"
    assert any(f"{remote.replace('~', '$HOME')}[gpu]" in c for c in config["setup_commands"]), "installs [gpu]"
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = " ".join(config[key])
        assert f"source {remote}/cluster/node_env.sh {cloud}" in start and "TINYTHINKER_RUNS=" in start


def _source_node_env(tmp_path, cloud: str, python_body: str) -> dict[str, str]:
    """Source cluster/node_env.sh with `python` standing in for the cloud's secret manager."""
    fake = tmp_path / "bin" / "python"
    fake.parent.mkdir(exist_ok=True)
    fake.write_text(f"#!/bin/sh\ncat > /dev/null\n{python_body}\n")
    fake.chmod(0o755)
    env = {"PATH": f"{fake.parent}:/usr/bin:/bin", "HOME": str(tmp_path)}
    script = (f"source {ROOT / 'cluster' / 'node_env.sh'} {cloud}; "
              "for v in OPENAI_API_KEY HF_TOKEN RAY_AUTH_TOKEN RAY_AUTH_MODE; do echo \"$v=${!v-<unset>}\"; done")
    out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


def test_node_env_exports_the_secrets_that_exist(tmp_path):
    # The stand-in knows two secrets (by their AWS names) and fails for the rest, as a secret manager would.
    found = _source_node_env(tmp_path, "aws", 'case "$2" in tinythinker/openai-api-key|tinythinker/ray-auth-token)'
                                              ' echo "value-of-$2";; *) exit 1;; esac')
    assert found == {"OPENAI_API_KEY": "value-of-tinythinker/openai-api-key", "HF_TOKEN": "<unset>",
                     "RAY_AUTH_TOKEN": "value-of-tinythinker/ray-auth-token", "RAY_AUTH_MODE": "token"}
    gcp = _source_node_env(tmp_path, "gcp", 'echo "value-of-$2"')
    assert gcp["HF_TOKEN"] == "value-of-tinythinker-hf-token"
    none = _source_node_env(tmp_path, "gcp", "exit 1")
    assert set(none.values()) == {"<unset>"}, "no secret manager: nothing exported, token auth stays off"


# ----- KubeRay -------------------------------------------------------------------------------------------------

def _check_ray_cluster_spec(spec: dict) -> None:
    import ray

    assert set(spec) <= RAY_CLUSTER_SPEC, f"unknown RayCluster spec fields {set(spec) - RAY_CLUSTER_SPEC}"
    assert spec["rayVersion"] == ray.__version__ and spec["enableInTreeAutoscaling"] is True
    assert set(spec.get("autoscalerOptions", {})) <= AUTOSCALER_OPTIONS
    head = spec["headGroupSpec"]
    assert set(head) <= HEAD_GROUP_SPEC
    assert all(isinstance(v, str) for v in head["rayStartParams"].values()), "rayStartParams are strings"
    assert head["rayStartParams"]["num-gpus"] == "0"
    head_container = head["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in head_container["resources"].get("limits", {})
    containers = [head_container]
    names = [g["groupName"] for g in spec["workerGroupSpecs"]]
    assert len(set(names)) == len(names) >= 2
    for group in spec["workerGroupSpecs"]:
        assert set(group) <= WORKER_GROUP_SPEC, f"unknown worker group fields {set(group) - WORKER_GROUP_SPEC}"
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"] and group["maxReplicas"] >= 1
        assert isinstance(group["rayStartParams"], dict)
        assert all(isinstance(v, str) for v in group["rayStartParams"].values())
        container = group["template"]["spec"]["containers"][0]
        res = container["resources"]
        assert res["limits"]["nvidia.com/gpu"] > 0, group["groupName"]
        assert res["limits"]["nvidia.com/gpu"] == res["requests"]["nvidia.com/gpu"], "GPU requests = limits"
        assert any(m["mountPath"] == "/dev/shm" for m in container["volumeMounts"]), "vLLM/NCCL need /dev/shm"
        containers.append(container)
    for c in containers:
        env = {e["name"]: e for e in c["env"]}
        ref = env["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"]
        assert ref["name"] and ref["key"], "the teacher's key comes from a Kubernetes Secret"
        literal = [n for n, e in env.items() if SECRET_NAME.search(n) and "value" in e]
        assert not literal, f"secrets written into the manifest: {literal}"


def test_kuberay_raycluster():
    doc = _yaml(KUBERAY / "raycluster.yaml")
    assert (doc["apiVersion"], doc["kind"]) == ("ray.io/v1", "RayCluster")
    _check_ray_cluster_spec(doc["spec"])


def test_kuberay_rayjob():
    doc = _yaml(KUBERAY / "rayjob.yaml")
    assert (doc["apiVersion"], doc["kind"]) == ("ray.io/v1", "RayJob")
    spec = doc["spec"]
    assert set(spec) <= RAY_JOB_SPEC, f"unknown RayJob spec fields {set(spec) - RAY_JOB_SPEC}"
    assert spec["shutdownAfterJobFinishes"] is True and spec["submissionMode"] == "K8sJobMode"
    _check_ray_cluster_spec(spec["rayClusterSpec"])
    yaml.safe_load(spec["runtimeEnvYAML"])
    command, cfg, _ = parse_command(spec["entrypoint"], ROOT)
    assert command == "run" and cfg.cluster.address == "auto"
    # no working dir is uploaded (runtimeEnvYAML has none) and the image holds no benchmark: the bucket's data
    assert "working_dir" not in yaml.safe_load(spec["runtimeEnvYAML"])
    _data_reaches_the_cluster(cfg, uploaded=None)
    # The submitter pod runs `ray job submit -- <entrypoint>` through bash: a $VARIABLE would expand there.
    assert "$" not in spec["entrypoint"] and cfg.run_dir != Config().run_dir


def test_dockerfile_builds_the_ray_the_project_pins():
    import ray

    dockerfile = (ROOT / "cluster" / "Dockerfile").read_text()
    assert re.search(rf"^FROM rayproject/ray:{re.escape(ray.__version__)}-py3\d+-gpu$", dockerfile, re.M)
    assert '"/app[gpu]"' in dockerfile and "COPY --chown=ray:users tinythinker_ray" in dockerfile


# ----- no secrets anywhere -------------------------------------------------------------------------------------

def test_no_file_holds_anything_that_looks_like_a_key():
    assert SECRET.search("OPENAI_API_KEY=sk-" + "x1" * 20), "the pattern itself finds a key"
    files = [p for d in ("cluster", "jobs") for p in (ROOT / d).rglob("*") if p.is_file()] + PRESETS
    assert len(files) >= 15
    leaks = {str(p.relative_to(ROOT)): m.group() for p in files
             if (m := SECRET.search(p.read_text(errors="replace")))}
    assert not leaks, leaks
    for p in files:  # a key written as a value, e.g. `OPENAI_API_KEY: abc` or `--api_key abc`
        text = p.read_text(errors="replace")
        assert not re.search(r"(?i)api[_-]?key\s*[:=]\s*['\"]?[A-Za-z0-9_-]{20,}", text), p
