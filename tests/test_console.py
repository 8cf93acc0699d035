"""The console (console.py): the package's lines on stdout, the libraries' and native stderr in the run's log
file, and everything restored when the command ends (pure: no Ray)."""

from __future__ import annotations

import logging
import os
import sys
import warnings

from tinythinker_ray import console


def test_a_quiet_session_keeps_the_terminal_for_our_lines_and_sends_the_rest_to_the_log(tmp_path, capfd):
    log = tmp_path / "logs" / "run.log"
    with console.session(verbose=False, log=log):
        logging.getLogger("tinythinker_ray.pipeline").info("[run] teach ...")  # ours: the terminal and the file
        logging.getLogger("ray.data").warning("Progress bars disabled.")  # a library's: the file only
        warnings.warn("a library's notice", UserWarning, stacklevel=1)
        os.write(2, b"core_worker.cc:2465: native noise\n")  # C++ writing to the process's stderr
        print("tinythinker run: error: one line", file=sys.stderr)  # ours: the terminal
        assert console.current_log() == str(log)
    out, err = capfd.readouterr()
    assert out == "[run] teach ...\n" and err == "tinythinker run: error: one line\n"
    text = log.read_text()
    for line in ("[run] teach ...", "Progress bars disabled.", "a library's notice", "native noise"):
        assert line in text, line
    os.write(2, b"after\n")  # the descriptor is the terminal's again, the handlers are gone
    logging.getLogger("ray.data").warning("later")
    assert capfd.readouterr().err.endswith("after\n") and "later" not in log.read_text()
    assert console.current_log() is None


def test_each_step_logs_to_a_file_of_its_own(tmp_path, capfd):
    with console.session(verbose=False, log=tmp_path / "run.log"):
        console.log_to(tmp_path / "sft.log")
        logging.getLogger("ray.train").info("training worker group started")
    assert "training worker group" in (tmp_path / "sft.log").read_text()
    assert "training worker group" not in (tmp_path / "run.log").read_text()
