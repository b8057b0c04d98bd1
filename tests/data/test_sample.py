"""`tpro data sample`: K seeded answers per prompt as conversations, end to end on a tiny model."""

import json

from click.testing import CliRunner

from tpro.data.cli import app
from tpro.data.io import read_rows, write_rows
from tpro.data.sample import SampleConfig
from tpro.engine.samples import answer_record, completion_text, sample_seed

runner = CliRunner()

ROWS = [
    {"id": "a", "instruction": "Переведи на английский.", "input": "Доброе утро"},
    {"id": "b", "instruction": "Назови три цвета.", "input": ""},
    {"id": "c", "instruction": "Сколько будет 2+2?", "input": None},
]
TEMPLATE = "{instruction}\n\n{input}"


def run(*args):
    res = runner.invoke(app, [str(a) for a in args])
    return res.exit_code, res.stdout, res.stderr


def test_template_drops_lines_of_empty_fields():
    cfg = SampleConfig(template=TEMPLATE)
    assert cfg.user_message(ROWS[0], 0) == "Переведи на английский.\n\nДоброе утро"
    assert cfg.user_message(ROWS[1], 1) == "Назови три цвета."
    assert cfg.user_message(ROWS[2], 2) == "Сколько будет 2+2?"
    assert SampleConfig().user_message({"prompt": "Привет"}, 0) == "Привет"
    typed = SampleConfig(template=r"{instruction}\n\n{input}")  # as a shell passes "...\n..."
    assert typed.user_message(ROWS[0], 0) == "Переведи на английский.\n\nДоброе утро"


def test_answers_are_the_engines_seeded_samples(tmp_path, tiny_qwen2_dir, tiny_qwen2):
    from tpro.engine import Engine, SamplingParams

    src, out = tmp_path / "p.jsonl", tmp_path / "s.jsonl"
    write_rows(src, ROWS)
    args = ["sample", src, "-o", out, "--model", tiny_qwen2_dir, "--dtype", "float32", "--template", TEMPLATE]
    args += ["--samples", "2", "--max-new-tokens", "5", "--seed", "3", "--system", "Отвечай кратко."]
    code, stdout, err = run(*args, "--keep-truncated", "--json")
    assert code == 0, err
    rows = read_rows(out)
    counts = json.loads(stdout)
    assert counts["rows_out"] == len(rows) == 6 and counts["dropped_truncated"] == 0
    assert [(r["id"], r["sample"]) for r in rows] == [(i, j) for i in "abc" for j in (0, 1)]
    # each answer is what the engine writes alone for that prompt and seed (the one seed rule)
    engine = Engine.from_loaded(tiny_qwen2)
    cfg = SampleConfig(template=TEMPLATE)
    for n, r in enumerate(rows):
        i, j = divmod(n, 2)
        system, user, assistant = r["messages"]
        assert system == {"role": "system", "content": "Отвечай кратко."}
        assert user == {"role": "user", "content": cfg.user_message(ROWS[i], i)}
        params = SamplingParams(max_new_tokens=5, temperature=0.7, top_p=0.95, seed=sample_seed(3, i, j))
        done = engine.complete([system, user], params)
        content = completion_text(answer_record(done), "direct")
        assert assistant == {"role": "assistant", "content": content} and r["tokens"] == len(done.token_ids)
    # truncated answers are dropped by default, and counted
    code, stdout, err = run(*args, "--json", "-o", tmp_path / "kept.jsonl")
    counts = json.loads(stdout)
    truncated = sum(r["finish_reason"] == "length" for r in rows)
    assert counts["dropped_truncated"] == truncated and counts["rows_out"] == 6 - truncated


def test_bad_input_exits_2_naming_the_fix(tmp_path, tiny_qwen2_dir):
    src = tmp_path / "p.jsonl"
    write_rows(src, ROWS)
    code, _, err = run("sample", src, "-o", tmp_path / "o.jsonl", "--model", tiny_qwen2_dir)
    assert code == 2 and "'prompt'" in err and "--template" in err
    code, _, err = run("sample", src, "-o", tmp_path / "o.jsonl", "--template", "{instruction")
    assert code == 2 and "--template" in err
    code, _, err = run("sample", src, "-o", tmp_path / "o.jsonl", "--model", tiny_qwen2_dir, "--template", "{nope}")
    assert code == 2 and "'nope'" in err
    assert not (tmp_path / "o.jsonl").exists()
