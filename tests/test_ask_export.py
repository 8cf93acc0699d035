"""`tinythinker ask` (a real subprocess on tiny students: the printed chain's structure, the vote, stdin) and
`tinythinker export` (a run directory assembled here -> a loadable HF folder with a model card)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tinythinker_ray import cli
from tinythinker_ray.ask import make_question, student_and_mode
from tinythinker_ray.config import dump_config, load_config
from tinythinker_ray.core.format import recall_input
from tinythinker_ray.errors import ConfigError
from tinythinker_ray.export import EXAMPLE, best_student

EXE = Path(sys.executable).with_name("tinythinker")


def tt(*args, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(EXE), *map(str, args)], capture_output=True, text=True, timeout=300, input=stdin)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_t5) -> Path:
    """A finished run as the stages leave it: sft/best, a reflect round that trained (its best differs from
    phase 1's) and one that stopped, config.yaml and two evaluations."""
    import torch

    from tinythinker_ray.models import load_student

    run = tmp_path_factory.mktemp("run")
    shutil.copytree(tiny_t5, run / "sft" / "best")
    model, tok = load_student(tiny_t5)
    with torch.no_grad():
        model.shared.weight[7].fill_(0.5)  # the exported weights must be this round's
    model.save_pretrained(run / "reflect" / "iter_1" / "best")
    tok.save_pretrained(run / "reflect" / "iter_1" / "best")
    (run / "reflect" / "iter_1" / "record.json").write_text(json.dumps(
        {"round": 1, "recall_pairs": 12, "analyze_pairs": 30, "val_accuracy": 0.4,
         "best": str(run / "reflect" / "iter_1" / "best")}))
    (run / "reflect" / "iter_2").mkdir(parents=True)
    (run / "reflect" / "iter_2" / "record.json").write_text(json.dumps(
        {"round": 2, "recall_pairs": 1, "analyze_pairs": 0, "stopped": "too few preference pairs to train"}))
    cfg = load_config(overrides=["data.name=arc", "data.path=/data/ARC-Challenge", "teacher.model=teacher-7b",
                                 "sft.mode=analyze_summarize", "student.max_new_tokens=24", "reflect.beta=0.3"])
    (run / "config.yaml").write_text(dump_config(cfg))
    evals = (("valid-sft", 0.25, 0.3, 40, 1, run / "sft" / "best"),
             ("test-final", 0.375, 0.5, 40, 5, run / "reflect" / "iter_1" / "best"))
    for name, acc, sc, n, k, model in evals:
        (run / "eval" / name).mkdir(parents=True)
        (run / "eval" / name / "summary.json").write_text(json.dumps(
            {"accuracy": acc, "sc_accuracy": sc, "n": n, "samples": k, "split": name, "model": str(model)}))
    return run


def _chains(out: str, options: str) -> list[list[str]]:
    """The printed chains (lines from recall or first analysis to answer); checks each one's structure."""
    lines = [ln.strip() for ln in out.splitlines()]
    chains, cur = [], []
    for ln in lines:
        if ln.startswith(("recall: ", "analysis ", "summary: ", "answer: ")):
            cur.append(ln)
            if ln.startswith("answer: "):
                chains.append(cur)
                cur = []
    for c in chains:
        body = [ln for ln in c if not ln.startswith("recall: ")]
        assert [ln.split(":")[0] for ln in body] == [f"analysis {x}" for x in options] + ["summary", "answer"]
        assert re.fullmatch(r"answer: (\([A-Z]\) .+|none \(the summary names no option\))", c[-1]), c[-1]
    return chains


# ----- ask ---------------------------------------------------------------------------------------------------------

def test_make_question():
    q = make_question(" Where? ", ["fridge", " oven", ""])
    assert (q.stem, q.options) == ("Where?", (("A", "fridge"), ("B", "oven")))
    assert make_question("Is it?", []).options == (("A", "yes"), ("B", "no"))
    with pytest.raises(ConfigError, match="two or more options"):
        make_question("Q?", ["only"])
    with pytest.raises(ConfigError, match="at most 26"):
        make_question("Q?", [str(i) for i in range(27)])
    with pytest.raises(ConfigError, match="empty"):
        make_question("  ", [])


def test_run_directory_resolves_to_the_last_trained_round(run_dir, tiny_t5):
    assert best_student(run_dir) == run_dir / "reflect" / "iter_1" / "best"  # iter_2 stopped without a best
    model, mode = student_and_mode(load_config(overrides=[f"student.model={run_dir}"]))
    assert (model, mode) == (str(run_dir / "reflect" / "iter_1" / "best"), "analyze_summarize")  # the run's mode
    model, mode = student_and_mode(load_config(overrides=[f"run_dir={run_dir}", "sft.mode=summarize"]))
    assert mode == "summarize" and model.endswith("iter_1/best")
    assert student_and_mode(load_config(overrides=[f"student.model={tiny_t5}"])) == (
        tiny_t5, "recall_analyze_summarize")


@pytest.mark.slow
def test_ask_prints_the_chain(tiny_t5):
    r = tt("ask", "--model", tiny_t5, "--student.max_new_tokens", 8, "Where do you keep milk?", "fridge", "oven",
           "shelf")
    assert r.returncode == 0, r.stderr
    assert f"student: {tiny_t5} (hf, mode recall_analyze_summarize)" in r.stdout
    assert "Q: Where do you keep milk?\n   (A) fridge (B) oven (C) shelf" in r.stdout
    (chain,) = _chains(r.stdout, "ABC")
    assert chain[0].startswith("recall: ") and len(chain) == 6
    assert re.search(r"^time: recall [\d.]+ s, analyze [\d.]+ s, summarize [\d.]+ s, total [\d.]+ s$", r.stdout,
                     re.M)


@pytest.mark.slow
def test_ask_samples_vote_on_a_causal_student(tiny_llama):
    r = tt("ask", "--model", tiny_llama, "--sampler.backend", "hf", "--samples", 3, "--student.max_new_tokens", 8,
           "Is the sun a star?")
    assert r.returncode == 0, r.stderr
    assert "(hf, mode recall_analyze_summarize)" in r.stdout and "(A) yes (B) no" in r.stdout
    chains = _chains(r.stdout, "AB")
    assert len(chains) == 3 and all(c[0].startswith("recall: ") for c in chains)
    assert [ln for ln in r.stdout.splitlines() if ln.startswith("chain ")] == ["chain 1/3", "chain 2/3", "chain 3/3"]
    votes = re.search(r"vote over 3 chains:\n\s+\(A\) yes\s+(\d+).*\n\s+\(B\) no\s+(\d+).*\n\s+none\s+(\d+)",
                      r.stdout)
    assert votes and sum(map(int, votes.groups())) == 3
    predicted = [c[-1] for c in chains]
    assert int(votes.group(3)) == sum(p.startswith("answer: none") for p in predicted)
    assert "answer (self-consistency): " in r.stdout


@pytest.mark.slow
def test_ask_interactive_from_stdin_on_a_run_directory(run_dir):
    stdin = "Where do you keep milk?\nfridge\noven\n\nQ with one option?\nonly\n\nIs it cold?\n\n\n"
    r = tt("ask", "--model", run_dir, "--student.max_new_tokens", 8, stdin=stdin)
    assert r.returncode == 0, r.stderr
    assert f"student: {run_dir / 'reflect' / 'iter_1' / 'best'} (hf, mode analyze_summarize)" in r.stdout
    assert "question (empty line to quit)" in r.stderr and "two or more options" in r.stderr  # asked again
    questions = [ln for ln in r.stdout.splitlines() if ln.startswith("Q: ")]
    assert questions == ["Q: Where do you keep milk?", "Q: Is it cold?"]
    chains = _chains(r.stdout, "AB")
    assert len(chains) == 2 and "recall:" not in r.stdout  # the run's mode has no recall stage
    assert len(re.findall(r"^time: analyze [\d.]+ s, summarize [\d.]+ s", r.stdout, re.M)) == 2


# ----- export ------------------------------------------------------------------------------------------------------

def test_export_writes_a_loadable_folder_with_a_model_card(run_dir, tmp_path):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, GenerationConfig

    out = tmp_path / "exported"
    assert cli.main(["export", f"--run_dir={run_dir}", str(out)]) == 0
    assert {"config.json", "generation_config.json", "README.md", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    model = AutoModelForSeq2SeqLM.from_pretrained(out)
    assert model.shared.weight[7, 0].item() == 0.5  # reflect round 1's weights, not phase 1's
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.decode(tok("So the answer is option A.")["input_ids"], skip_special_tokens=True) == (
        "So the answer is option A.")
    assert GenerationConfig.from_pretrained(out).max_new_tokens == 24  # the run's student.max_new_tokens
    card = (out / "README.md").read_text()
    assert "--- recall input ---" not in card  # the prompt sample is the one its mode (analyze_summarize) trains
    for text in ("# TinyThinker student for arc", "reflect/iter_1/best", "/data/ARC-Challenge", "teacher-7b",
                 "| phase 1 stages | analyze_summarize |", "| DPO beta | 0.3 |", "| phase 2 lr | 5e-06 |",
                 "| valid-sft | 25.0% | 30.0% | 40 | 1 |", "| test-final | 37.5% | 50.0% | 40 | 5 |",
                 "| 1 | 12 | 30 | 40.0% |", "| 2 | 1 | 0 | stopped: too few preference pairs to train |",
                 "(A) fridge (B) oven (C) shelf\nAnalyze: For option A,", "\nSummarize:",
                 "So the answer is option A.", "tinythinker ask --model path/to/model", "AutoModelForSeq2SeqLM"):
        assert text in card, text
    assert str(out) not in card and str(run_dir) not in card  # the card travels: no local folder in it
    # the card's usage snippet runs as written, on the exported folder, with the chain's exact prompts
    snippet = card.split("```python\n")[1].split("```")[0].replace("path/to/model", str(out))
    namespace: dict = {}
    exec(compile(snippet, str(out / "README.md"), "exec"), namespace)
    assert namespace["q"] + "\nRecall:" == recall_input(EXAMPLE)
    assert isinstance(namespace["recall"], str) and namespace["analyses"].startswith("For option A, ")
    # a second export replaces the first and leaves no temporary folder behind
    (out / "stale.txt").write_text("x")
    assert cli.main(["export", f"--run_dir={run_dir}", str(out)]) == 0
    assert not (out / "stale.txt").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["exported"]


def test_model_card_metadata_passes_huggingface_hub_validation(run_dir, tmp_path):
    """The hub's own check (ModelCard.validate) is a request to huggingface.co; offline, the same library parses
    the card as the hub client does: ModelCard.load validates the YAML header and the model-index (it raises
    on a bad one), and model_index_to_eval_results reads the results back in the hub's format."""
    from huggingface_hub import ModelCard, metadata_load
    from huggingface_hub.repocard_data import model_index_to_eval_results

    out = tmp_path / "exported"
    assert cli.main(["export", f"--run_dir={run_dir}", str(out)]) == 0
    card = ModelCard.load(out / "README.md")  # ignore_metadata_errors=False: an invalid header raises
    meta = metadata_load(out / "README.md")
    assert (meta["library_name"], meta["pipeline_tag"], meta["license"]) == (
        "transformers", "text2text-generation", "mit")  # the run's student: tiny-t5, this project's random init
    assert "base_model" not in meta
    assert {"tinythinker", "distillation"} <= set(meta["tags"]) and meta["metrics"] == ["accuracy"]
    name, results = model_index_to_eval_results(meta["model-index"])
    assert name == card.data.model_name == "TinyThinker student for arc"
    # only the exported checkpoint's evaluation (test-final, of reflect/iter_1/best), with its vote of 5 chains
    assert [(r.dataset_split, r.metric_type, r.metric_value) for r in results] == [
        ("test", "accuracy", 0.375), ("test", "accuracy", 0.5)]
    assert all(r.task_type == "multiple-choice" and r.dataset_name == "arc" for r in results)


@pytest.mark.parametrize("spec, base, license_", [
    ("smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0"),
    ("Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-0.5B-Instruct", "apache-2.0"),
    ("tiny-t5", None, "mit"),
    ("/models/mine", None, "other"),
])
def test_model_card_names_a_hub_base_model_and_its_licence(tmp_path, spec, base, license_):
    from tinythinker_ray.export import card_data

    settings = yaml.safe_load(dump_config(load_config(overrides=[f"student.model={spec}", "data.name=obqa"])))
    data = card_data(tmp_path, tmp_path / "sft" / "best", settings, seq2seq=False)
    assert (data.base_model, data.license) == (base, license_)
    assert data.datasets == ["allenai/openbookqa"] and data.eval_results is None  # no evaluation in the run


def test_export_default_folder_and_refusals(run_dir, tmp_path, tiny_t5, monkeypatch, capsys):
    run = tmp_path / "run"
    (run / "sft").mkdir(parents=True)
    assert cli.main(["export", f"--run_dir={run}"]) == 2
    assert "no trained student" in capsys.readouterr().err
    (run / "sft" / "best").symlink_to(tiny_t5)
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    cfg["data"]["path"] = "https://data.example/arc?token=sk-this-is-secret-42"  # a leak the card would print
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    monkeypatch.setenv("SOME_API_KEY", "sk-this-is-secret-42")
    assert cli.main(["export", f"--run_dir={run}"]) == 2
    assert "would contain the value of $SOME_API_KEY" in capsys.readouterr().err
    assert not (run / "export").exists()
    monkeypatch.delenv("SOME_API_KEY")
    assert cli.main(["export", f"--run_dir={run}"]) == 0  # default folder: run/export
    assert "AutoModelForSeq2SeqLM" in (run / "export" / "README.md").read_text()
    assert "_no evaluation in this run_" in (run / "export" / "README.md").read_text()
    busy = tmp_path / "notes"
    busy.mkdir()
    (busy / "mine.txt").write_text("keep me")
    assert cli.main(["export", f"--run_dir={run}", str(busy)]) == 2
    assert (busy / "mine.txt").read_text() == "keep me"
    assert cli.main(["export", f"--run_dir={run}", "a", "b"]) == 2
