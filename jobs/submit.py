"""Submit a job spec (jobs/*.yaml) to a Ray cluster; with --follow, stream its log until it ends.

    python jobs/submit.py jobs/csqa-t5-base.yaml --address http://127.0.0.1:8265 --follow -- --sft.lr 3e-4

A spec is a YAML mapping of `JobSubmissionClient.submit_job` arguments: entrypoint, runtime_env, metadata,
submission_id, entrypoint_num_cpus / _num_gpus / _memory / _resources / _label_selector. Why not just
`ray job submit -- ...`: that CLI shell-quotes every word, so a `$VARIABLE` in the command never expands on the
cluster; here the entrypoint reaches the cluster's shell verbatim (the specs read the cluster's
TINYTHINKER_RUNS). Words after `--` are appended to the entrypoint, quoted. A relative runtime_env.working_dir
is resolved against the spec's folder, so a spec submits the same files from any current directory.

Ray >= 2.60 token auth: with RAY_AUTH_MODE=token the client sends the token found in RAY_AUTH_TOKEN,
RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token. The address defaults to RAY_API_SERVER_ADDRESS / RAY_ADDRESS /
http://127.0.0.1:8265, as for `ray job submit`.
Exit status: 0 once submitted, or with --follow once the job SUCCEEDED; 1 when it failed or was stopped; 2 when
the cluster cannot be reached or the two sides disagree on the token (one line saying which side needs it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
import time
from pathlib import Path

import yaml

SPEC_KEYS = ("entrypoint", "runtime_env", "metadata", "submission_id", "entrypoint_num_cpus",
             "entrypoint_num_gpus", "entrypoint_memory", "entrypoint_resources", "entrypoint_label_selector")


def load_spec(path: str | Path, extra: list[str] | None = None) -> dict:
    """The spec as `submit_job` keyword arguments: extra words appended, a relative working_dir made absolute."""
    path = Path(path)
    try:
        spec = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise SystemExit(f"{path}: cannot read the job spec: {e}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("entrypoint"), str):
        raise SystemExit(f"{path}: a job spec is a mapping with an 'entrypoint' command")
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise SystemExit(f"{path}: unknown job spec key(s) {unknown}; allowed: {', '.join(SPEC_KEYS)}")
    spec["entrypoint"] = spec["entrypoint"].strip()
    if extra:
        spec["entrypoint"] += " " + shlex.join(extra)
    runtime_env = dict(spec.get("runtime_env") or {})
    working_dir = runtime_env.get("working_dir")
    if working_dir and "://" not in working_dir and not Path(working_dir).is_absolute():
        runtime_env["working_dir"] = str((path.parent / working_dir).resolve())
    spec["runtime_env"] = runtime_env
    return spec


async def _stream_logs(client, job_id: str) -> None:
    async for chunk in client.tail_job_logs(job_id):
        print(chunk, end="", flush=True)


def follow(client, job_id: str) -> int:
    """Stream the job's log until it ends; the exit status says whether it SUCCEEDED."""
    from ray.job_submission import JobStatus

    try:
        asyncio.run(_stream_logs(client, job_id))
    except KeyboardInterrupt:
        print(f"\nstopped following; the job keeps running (ray job stop {job_id} ends it)", file=sys.stderr)
        return 130
    status = client.get_job_status(job_id)
    while not status.is_terminal():  # the log stream can close a moment before the status is final
        time.sleep(1)
        status = client.get_job_status(job_id)
    info = client.get_job_info(job_id)
    print(f"job {job_id}: {status.value}" + (f" ({info.message})" if info.message else ""))
    return 0 if status == JobStatus.SUCCEEDED else 1


def client_error(e: BaseException, address: str | None) -> str | None:
    """One line for what a submission meets before any job runs, from the exceptions Ray 2.60's
    JobSubmissionClient raises (ray.exceptions.AuthenticationError, whose text carries the HTTP answer and a
    paragraph of advice; ConnectionError); None for anything else."""
    from ray.exceptions import AuthenticationError

    where = (address or os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS")
             or "http://127.0.0.1:8265")
    token = "the head's token in RAY_AUTH_TOKEN (or a file named by RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token)"
    if isinstance(e, AuthenticationError):
        if e.message.startswith("Authentication required"):  # 401: the head has token auth, no token came
            return (f"the Ray cluster at {where} requires a token and this side sent none: "
                    f"export RAY_AUTH_MODE=token, with {token}")
        if e.message.startswith("Authentication failed"):  # 403: a token came, not the head's
            return (f"the Ray cluster at {where} refused this side's token: it is not the head's "
                    f"(`ray get-auth-token` on the head prints it); put {token}")
        if "find an authentication token" in e.message:  # raised here, before any request
            return ("this side has RAY_AUTH_MODE=token but no token: give it " + token + "; a head without "
                    "token auth needs none, so unset RAY_AUTH_MODE")
        return f"token authentication with the Ray cluster at {where} failed: {e.message.splitlines()[0]}"
    if isinstance(e, ConnectionError):
        return f"no Ray dashboard answers at {where}: is the head up (and its port 8265 forwarded)?"
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []  # words for the entrypoint, kept verbatim
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     usage="%(prog)s SPEC [--address URL] [--follow] [-- WORD ...]")
    parser.add_argument("spec", help="a job spec, e.g. jobs/csqa-t5-base.yaml")
    parser.add_argument("--address", help="the cluster's dashboard, e.g. http://127.0.0.1:8265")
    parser.add_argument("--submission-id", help="a job id of your choosing (default: generated)")
    parser.add_argument("--follow", action="store_true", help="stream the log and wait for the job's end")
    args = parser.parse_args(argv)

    spec = load_spec(args.spec, extra)
    if args.submission_id:
        spec["submission_id"] = args.submission_id
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    try:
        client = JobSubmissionClient(args.address)  # checks the connection (and the token) already
        job_id = client.submit_job(**spec)
    except (AuthenticationError, ConnectionError) as e:
        print(f"submit.py: error: {client_error(e, args.address)}", file=sys.stderr)
        return 2
    address = f" --address {args.address}" if args.address else ""
    print(f"submitted {job_id}: {spec['entrypoint']}")
    print(f"  follow: ray job logs{address} --follow {job_id}")
    print(f"  status: ray job status{address} {job_id}")
    print(f"  stop:   ray job stop{address} {job_id}")
    return follow(client, job_id) if args.follow else 0


if __name__ == "__main__":
    sys.exit(main())
