"""`teach` end to end on real local Ray: hf (garbage replies), vllm with constrained decoding, replay (exact
datasets), openai against a local misbehaving server, a dying endpoint, and resume after SIGKILL."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from test_teacher_prompt import fewshot_question, in_user_order

from tinythinker_ray.config import build_config
from tinythinker_ray.core import format as fmt
from tinythinker_ray.data.loaders import embedded_dir, load_benchmark, load_fewshot
from tinythinker_ray.errors import ConfigError, TinyThinkerError
from tinythinker_ray.storage import read_jsonl
from tinythinker_ray.teacher import prompt
from tinythinker_ray.teacher.asking import TeacherError
from tinythinker_ray.teacher.distill import teach
from tinythinker_ray.teacher.stages import STAGES

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
KEY_ENV, KEY = "TT_TEST_TEACHER_KEY", "sk-teacher-test-SECRET-0042"
# Set at import, before the session's Ray starts: its workers (the openai replicas) inherit the environment.
os.environ[KEY_ENV] = KEY
N_QUESTIONS = 16


def config(tmp_path: Path, **teacher):
    return build_config({"run_dir": str(tmp_path / "run"), "data": {"name": "csqa", "max_train": N_QUESTIONS},
                         "teacher": {"shots": 1, "samples": 2, "augment": 2, "retry_rounds": 1, **teacher}})


def rows(run: Path, stage: str) -> list[dict]:
    return list(read_jsonl(run / "teach" / f"{stage}.jsonl"))


def replies(run: Path) -> list[dict]:
    return list(read_jsonl(run / "teach" / "replies.jsonl"))


def assert_well_formed(run: Path, stats: dict, questions) -> None:
    """Stage files agree with the format, the stats, and one analyze row per option of every rationale."""
    by_id = {q.id: q for q in questions}
    for stage in STAGES:
        got = rows(run, stage)
        assert len(got) == stats["rows"][stage]["written"]
        for r in got:
            assert set(r) == {"input", "target", "label", "qid"} and r["target"]
            assert fmt.parse_stage_input(r["input"])["stage"] == stage.removesuffix("_single")
    for r in rows(run, "recall"):
        assert r["input"] == fmt.recall_input(by_id[r["qid"]])
    options = defaultdict(list)  # (qid, recall) -> options analysed
    for r in rows(run, "analyze"):
        p = fmt.parse_stage_input(r["input"])
        options[(r["qid"], p["recall"])].append(p["option"])
    for (qid, _), opts in options.items():
        assert sorted(opts) == by_id[qid].labels
    for r in rows(run, "summarize"):
        assert r["target"] == f"So the answer is option {r['label']}."
        assert [lab for lab, _ in fmt.parse_stage_input(r["input"])["analyses"]] == by_id[r["qid"]].labels
    assert len(rows(run, "recall_single")) == stats["questions_with_rationales"]


# ----- local engines ---------------------------------------------------------------------------------------

def test_hf_garbage_is_dropped_counted_and_retried(tmp_path, tiny_llama, ray_local):
    cfg = config(tmp_path, backend="hf", model=tiny_llama, max_tokens=24, block_size=8)
    run = Path(cfg.run_dir)
    # a teach whose replies made no stage rows fails with what to look at (issue #24), its counts kept on disk
    with pytest.raises(TinyThinkerError, match=r"teach: 0 of 64 replies parsed into stage rows.*stats\.json"):
        teach(cfg)
    stats = json.loads((run / "teach" / "stats.json").read_text())
    assert stats["questions"] == N_QUESTIONS and stats["parsed"] == 0 and stats["kept"] == 0
    assert stats["samples"] == 2 * N_QUESTIONS * 2  # round 0 + one retry round, 2 samples each
    assert sum(stats["dropped"].values()) == stats["samples"]
    assert stats["retries"] == N_QUESTIONS and [r["questions"] for r in stats["rounds"]] == [16, 16]
    assert Counter((ln["qid"], ln["round"]) for ln in replies(run)) == {
        (q.id, r): 1 for q in load_benchmark("csqa").train[:N_QUESTIONS] for r in (0, 1)}
    for stage in STAGES:
        assert (run / "teach" / f"{stage}.jsonl").read_text() == ""
    assert len(list(read_jsonl(run / "teach" / "questions" / "train.jsonl"))) == N_QUESTIONS
    assert list(read_jsonl(run / "teach" / "questions" / "test.jsonl"))  # eval inputs are written too


def test_vllm_constrained_replies_make_datasets(tmp_path, tiny_llama, ray_local):
    cfg = config(tmp_path, backend="vllm", model=tiny_llama, max_tokens=300, line_chars=30, kv_cache_gib=0.25,
                 block_size=8, max_model_len=1024)
    stats = teach(cfg)
    run = Path(cfg.run_dir)
    questions = load_benchmark("csqa").train[:N_QUESTIONS]
    by_id = {q.id: q for q in questions}
    lines = replies(run)
    assert all(ln["regex"] == prompt.constraint_regex(by_id[ln["qid"]], 30) for ln in lines)
    # the regex fixes the shape, not the verdicts (the teacher's own, as GPT-4o's): every reply has the shape, and
    # what the filters drop is a reply that calls no option or several options correct
    for ln in lines:
        for c in ln["completions"]:
            # the grammar counts a line's characters in what the model emitted; a byte-level tokenizer's broken
            # UTF-8 decodes to extra U+FFFD, so such a reply's line lengths are not held to the limit
            regex = ln["regex"].replace("{0,29}", "*") if "\ufffd" in c["text"] else ln["regex"]
            assert c["finish_reason"] == "length" or re.fullmatch(regex, c["text"]), c["text"]
    assert set(stats["dropped"]) <= {"no_correct_option", "multiple_correct", "length"}
    assert stats["parsed"] + sum(stats["dropped"].values()) == stats["samples"]
    assert stats["consistent"] + stats["inconsistent"] == stats["parsed"] > 0
    # a question whose parsed replies all name another option is relabelled, and its rows carry the new label
    assert_well_formed(run, stats, questions)
    labels = {r["qid"]: r["label"] for r in rows(run, "summarize")}
    assert sum(labels[q] != by_id[q].answer for q in labels) <= stats["relabelled"]


def test_replay_gives_exact_datasets(tmp_path, ray_local):
    """Replies written from the paper's real few-shot rationales (plus broken ones) -> exactly these rows."""
    shots = load_fewshot("csqa")
    questions = [fewshot_question(ex, f"shot-{i}") for i, ex in enumerate(shots)]
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(json.dumps(
        {"id": q.id, "question": {"stem": q.stem, "choices": [{"label": a, "text": b} for a, b in q.options]},
         "answerKey": q.answer}) + "\n" for q in questions))
    fewshot_file = str(embedded_dir("csqa") / "fewshot_rationales.json")
    cfg = build_config({"run_dir": str(tmp_path / "run"), "data": {"name": "custom", "path": str(data)},
                        "teacher": {"backend": "replay", "model": str(tmp_path / "replies.jsonl"),
                                    "fewshot_path": fewshot_file, "shots": 2, "samples": 3, "augment": 2,
                                    "retry_rounds": 0}})
    system = prompt.system_message(shots, 2, seed=cfg.seed)
    expected = {stage: [] for stage in STAGES}
    recorded = []
    for i, (q, ex) in enumerate(zip(questions, shots, strict=True)):
        lines = in_user_order(q, ex)
        label = q.answer
        if i == 0:  # the teacher (twice) calls another option correct: relabel to it
            label = next(lab for lab in q.labels if lab != q.answer)
            lines = [ln.replace(" is correct.", " is incorrect.") if ln[0] == q.answer else
                     ln.replace(" is incorrect.", " is correct.") if ln[0] == label else ln for ln in lines]
        knowledge = [ex["Key Information"], "In other words: " + ex["Key Information"]]
        cut = (prompt.reply_text(knowledge[0], lines), "length")
        bad = ("I cannot help with that.", "stop") if i else cut
        recorded.append({"qid": q.id, "prompt": prompt.messages(q, system), "completions": [
            {"text": prompt.reply_text(k, lines), "finish_reason": "stop"} for k in knowledge] + [
            {"text": bad[0], "finish_reason": bad[1]}]})
        reasons = {ln[0]: fmt.ensure_period(ln.split(". Because ", 1)[1]) for ln in lines}
        analyses = [(lab, reasons[lab]) for lab in q.labels]
        for k in map(fmt.ensure_period, knowledge):
            expected["recall"].append({"input": fmt.recall_input(q), "target": k, "label": label,
                                       "qid": q.id})
            expected["analyze"] += [{"input": fmt.analyze_input(q, lab, k), "target": reason, "label": label,
                                     "qid": q.id} for lab, reason in analyses]
            expected["summarize"].append({"input": fmt.summarize_input(q, k, analyses),
                                          "target": fmt.summarize_target(label), "label": label, "qid": q.id})
        expected["recall_single"].append(expected["recall"][-2])
    (tmp_path / "replies.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recorded))
    stats = teach(cfg)
    run = Path(cfg.run_dir)
    for stage in STAGES:
        assert rows(run, stage) == expected[stage], stage
    assert (stats["samples"], stats["parsed"], stats["kept"], stats["relabelled"]) == (24, 16, 16, 1)
    assert stats["dropped"] == {"length": 1, "no_key_information": 7}
    # a rerun finds every question answered: nothing is sampled, the same files come out
    before = (run / "teach" / "replies.jsonl").read_text()
    again = teach(cfg)
    assert (run / "teach" / "replies.jsonl").read_text() == before
    assert again | {"seconds": 0} == stats | {"seconds": 0}
    for stage in STAGES:
        assert rows(run, stage) == expected[stage], stage
    # resuming with another prompt would mix two teachers in one dataset: refused
    with pytest.raises(ConfigError, match="another teacher prompt"):
        teach(cfg.model_copy(update={"teacher": cfg.teacher.model_copy(update={"shots": 3})}))


# ----- an OpenAI-compatible endpoint, local --------------------------------------------------------------

class Teacher:
    """A chat-completions server that reads the question from the user turn and answers in the teacher's
    format (a distinct Key Information per sample, one line per option in the asked order). It counts
    successful requests per question and per phase, can answer slowly, throw 429/500 on a schedule, or die."""

    VIEWS = ("Think about the situation described in", "Focus on what the words imply in",
             "Everyday knowledge settles the question", "The wording points to a single use in")

    def __init__(self, stems: dict[str, str], *, delay: float = 0.0, flaky: bool = False):
        self.stems, self.delay, self.flaky = stems, delay, flaky
        self.lock = threading.Lock()
        self.requests = 0
        self.failures = Counter()
        self.ok: dict[str, Counter] = defaultdict(Counter)  # phase -> qid -> successful requests
        self.phase, self.dead_after = "first", None
        teacher = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, payload = teacher.answer(body, self.headers.get("Authorization"))
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.send_header("Retry-After", "0")  # keep the client's backoff short in tests
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, body: dict, auth: str | None) -> tuple[int, dict]:
        assert auth == f"Bearer {KEY}"
        user = body["messages"][-1]["content"]
        qid = self.stems[user.split("\nOptions: ")[0]]
        with self.lock:
            self.requests += 1
            k = self.requests
            dead = self.dead_after is not None and sum(self.ok[self.phase].values()) >= self.dead_after
            fail = 500 if dead else 0
            if self.flaky and not fail:
                fail = 429 if k % 4 == 2 else 500 if k % 7 == 3 else 0
            if fail:
                self.failures[fail] += 1
                return fail, {"error": {"message": "try again"}}
        time.sleep(self.delay)
        gold = re.search(r"Explanations: ([A-Z]) is correct\. Because", user).group(1)
        others = re.findall(r"^([A-Z]) is incorrect\. Because$", user, re.M)
        choices = []
        for i in range(body["n"]):
            lines = [f"{gold} is correct. Because option {gold} fits the question best (view {i})."]
            lines += [f"{x} is incorrect. Because option {x} does not fit it (view {i})." for x in others]
            text = prompt.reply_text(f"{self.VIEWS[i % 4]} {qid}.", lines)
            choices.append({"index": i, "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop"})
        with self.lock:
            self.ok[self.phase][qid] += 1
        return 200, {"choices": choices}

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def csqa16():
    return load_benchmark("csqa").train[:N_QUESTIONS]


def openai_config(tmp_path, url, **teacher):
    return config(tmp_path, **{"backend": "openai", "model": "teacher-test", "base_url": url,
                               "api_key_env": KEY_ENV, **teacher})


def test_missing_key_fails_before_any_work(tmp_path, monkeypatch):
    monkeypatch.delenv("TT_TEST_NO_SUCH_KEY", raising=False)
    cfg = openai_config(tmp_path, "http://127.0.0.1:9/v1", api_key_env="TT_TEST_NO_SUCH_KEY")
    with pytest.raises(ConfigError, match="TT_TEST_NO_SUCH_KEY"):
        teach(cfg)
    assert not (tmp_path / "run").exists()


def test_openai_flaky_endpoint(tmp_path, csqa16, ray_local, capfd):
    server = Teacher({q.stem: q.id for q in csqa16}, flaky=True)
    try:
        cfg = openai_config(tmp_path, server.url, block_size=4, max_retries=4, max_concurrency=4)
        stats = teach(cfg)
    finally:
        server.close()
    run = Path(cfg.run_dir)
    assert server.failures[429] and server.failures[500]
    assert server.ok["first"] == {q.id: 1 for q in csqa16}  # one good request per question, no retry round
    assert server.requests == N_QUESTIONS + sum(server.failures.values())
    assert (stats["samples"], stats["parsed"], stats["kept"], stats["retries"]) == (32, 32, 32, 0)
    assert_well_formed(run, stats, csqa16)
    for q in csqa16:
        recalls = {r["target"] for r in rows(run, "recall") if r["qid"] == q.id}
        assert recalls == {f"{Teacher.VIEWS[i]} {q.id}." for i in range(2)}
        gold = [r["target"] for r in rows(run, "analyze") if r["qid"] == q.id
                and fmt.parse_stage_input(r["input"])["option"] == q.answer]
        assert sorted(gold) == [f"option {q.answer} fits the question best (view {i})." for i in range(2)]
    assert KEY not in capfd.readouterr().out + (run / "teach" / "replies.jsonl").read_text()


def test_dying_endpoint_stops_with_work_saved_then_resumes(tmp_path, csqa16, ray_local):
    server = Teacher({q.stem: q.id for q in csqa16})
    server.dead_after = 6
    try:
        cfg = openai_config(tmp_path, server.url, block_size=2, max_retries=1, max_concurrency=1)
        with pytest.raises(TeacherError, match="still failing.*rerun the same command"):
            teach(cfg)
        run = Path(cfg.run_dir)
        saved = {ln["qid"] for ln in replies(run)}
        assert saved and len(saved) <= 6 and not (run / "teach" / "recall.jsonl").exists()
        server.phase, server.dead_after = "second", None
        stats = teach(cfg)
    finally:
        server.close()
    assert_no_loss_no_repeat(run, csqa16, saved, server)
    assert stats["kept"] == 2 * N_QUESTIONS


def assert_no_loss_no_repeat(run: Path, questions, saved: set[str], server: Teacher) -> None:
    lines = replies(run)
    assert Counter(ln["qid"] for ln in lines) == {q.id: 1 for q in questions}  # each question once, none lost
    assert not saved & set(server.ok["second"])  # what the first run saved was not asked again
    assert set(server.ok["second"]) == {q.id for q in questions} - saved


def test_resume_after_sigkill(tmp_path, csqa16):
    """`tinythinker teach` in a subprocess, killed with SIGKILL mid-round, then rerun to the end."""
    server = Teacher({q.stem: q.id for q in csqa16}, delay=0.4)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "tinythinker_ray.cli", "teach", "--run_dir", str(run),
           "--data.max_train", "16", "--teacher.backend", "openai", "--teacher.model", "teacher-test",
           "--teacher.base_url", server.url, "--teacher.api_key_env", KEY_ENV, "--teacher.shots", "1",
           "--teacher.samples", "2", "--teacher.augment", "2", "--teacher.block_size", "2",
           "--teacher.max_concurrency", "1", "--cluster.num_cpus", "2"]
    env = {**os.environ, "RAY_DEDUP_LOGS": "0"}
    try:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        path = run / "teach" / "replies.jsonl"
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if path.exists() and path.read_text().count("\n") >= 4:  # two blocks are on disk
                break
            time.sleep(0.1)
        assert proc.poll() is None, proc.communicate()[0].decode()[-3000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever of its own Ray is left in its session
        except ProcessLookupError:
            pass
        saved = {ln["qid"] for ln in read_jsonl(path)}
        assert 4 <= len(saved) < N_QUESTIONS
        server.phase = "second"
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    finally:
        server.close()
    assert f"{len(saved)} of {N_QUESTIONS} questions already answered" in done.stdout
    assert_no_loss_no_repeat(run, csqa16, saved, server)
    stats = json.loads((run / "teach" / "stats.json").read_text())
    assert stats["kept"] == 2 * N_QUESTIONS
    assert_well_formed(run, stats, csqa16)
    assert KEY not in done.stdout + done.stderr
