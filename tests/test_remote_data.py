"""data.path on object storage: a cluster's driver reads the benchmark from the bucket its runs go to. A
`file://` URI goes through the same pyarrow filesystem code as s3:// and gs://."""

from __future__ import annotations

import shutil

import pytest

from tinythinker_ray.data.loaders import embedded_dir, load_benchmark
from tinythinker_ray.errors import DataError


def _ids(splits) -> list[list[str]]:
    return [[q.id for q in part] for part in (splits.train, splits.valid, splits.test)]


@pytest.fixture
def bucket(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYTHINKER_CACHE", str(tmp_path / "cache"))
    shutil.copytree(embedded_dir("obqa"), tmp_path / "bucket" / "obqa")
    return tmp_path / "bucket"


def test_a_folder_uri_loads_as_the_local_folder(bucket):
    local = load_benchmark("obqa", str(bucket / "obqa"))
    assert _ids(load_benchmark("obqa", f"file://{bucket / 'obqa'}")) == _ids(local)
    (bucket / "obqa" / "test.jsonl").write_text((bucket / "obqa" / "dev.jsonl").read_text())
    again = load_benchmark("obqa", f"file://{bucket / 'obqa'}")  # fetched at every load: a change is seen
    assert _ids(again)[2] == _ids(local)[1]


def test_a_file_uri_loads_as_the_training_file(bucket):
    splits = load_benchmark("obqa", f"file://{bucket / 'obqa' / 'train.jsonl'}")
    assert _ids(splits) == [_ids(load_benchmark("obqa", str(bucket / "obqa")))[0], [], []]


def test_a_missing_uri_names_itself(bucket):
    with pytest.raises(DataError) as e:
        load_benchmark("obqa", f"file://{bucket / 'nope'}")
    assert str(e.value) == f"file://{bucket / 'nope'}, field 'data.path': no such file or folder"
