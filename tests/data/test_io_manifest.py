import json

import pytest

from tpro.data.io import DataError, fingerprint, read_rows, text_of, write_rows
from tpro.data.manifest import Manifest, is_done, manifest_path

ROWS = [{"id": 1, "text": "привет"}, {"id": 2, "text": "мир", "extra": [1, 2]}]


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_rows_round_trip(tmp_path, suffix):
    path = tmp_path / f"rows{suffix}"
    assert write_rows(path, ROWS) == 2
    expected = ROWS if suffix == ".jsonl" else [{**ROWS[0], "extra": None}, ROWS[1]]  # columnar: nulls fill in
    assert read_rows(path) == expected
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind


def test_reads_a_saved_datasets_directory(tmp_path):
    import datasets

    datasets.Dataset.from_list([{"text": "a"}, {"text": "b"}]).save_to_disk(str(tmp_path / "ds"))
    assert read_rows(tmp_path / "ds") == [{"text": "a"}, {"text": "b"}]


def test_bad_inputs_name_the_problem(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{oops\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: not valid JSON"):
        read_rows(bad)
    with pytest.raises(DataError, match="does not exist"):
        read_rows(tmp_path / "missing.jsonl")
    with pytest.raises(DataError, match="no field 'body'"):
        text_of({"text": "x"}, "body")


def test_text_of_joins_chat_messages():
    row = {"prompt": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}
    assert text_of(row, "prompt") == "a\nb"


def test_manifest_records_inputs_and_chains_history(tmp_path):
    src, mid, out = tmp_path / "in.jsonl", tmp_path / "mid.jsonl", tmp_path / "out.jsonl"
    write_rows(src, ROWS)
    m1 = Manifest.start("dedup", {"threshold": 0.7}, [src], [2])
    write_rows(mid, ROWS[:1])
    m1.counts = {"rows_in": 2, "rows_out": 1}
    m1.add_output(mid, 1)
    m1.write(mid)
    assert is_done(mid, Manifest.start("dedup", {"threshold": 0.7}, [src]))
    assert not is_done(mid, Manifest.start("dedup", {"threshold": 0.8}, [src]))  # other parameters
    m2 = Manifest.start("tag", {}, [mid])
    write_rows(out, ROWS[:1])
    m2.add_output(out, 1)
    m2.write(out)
    data = json.loads(manifest_path(out).read_text())
    assert data["inputs"][0]["sha256"] == fingerprint(mid)
    assert [h["step"] for h in data["history"]] == ["dedup"]
    assert data["history"][0]["counts"] == {"rows_in": 2, "rows_out": 1}
    assert "datasketch" in data["versions"]
    write_rows(mid, ROWS)  # the output changed after the manifest: no longer up to date
    assert not is_done(mid, Manifest.start("dedup", {"threshold": 0.7}, [src]))
