"""``tpro serve`` from one declaration (``ServeConfig``): the YAML files under configs/serve, the old flag spellings
as hidden aliases, the same settings in Python (``build_app``), and a real server started through ``--config``."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import CliRunner
from fastapi.testclient import TestClient

from tests.serve.conftest import API_KEY, start_server, stop_server
from tpro.serve import ServeConfig, build_app
from tpro.serve.cli import app

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "serve"


def resolved(*args: str, env: dict | None = None) -> dict:
    r = CliRunner().invoke(app, [*args, "--print-config"], env=env)
    assert r.exit_code == 0, r.output
    return yaml.safe_load(r.output)


def test_default_yaml_is_the_commands_defaults():
    assert ServeConfig.from_yaml(CONFIGS / "default.yaml") == ServeConfig()
    defaults = {k: v for k, v in ServeConfig().to_dict().items() if k != "api_key"}  # a secret is never printed
    assert resolved("--config", str(CONFIGS / "default.yaml")) == resolved() == defaults


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_serve_config_reads_and_names_its_command(path):
    assert path.read_text().startswith(f"# tpro serve --config configs/serve/{path.name}\n")
    want = {k: v for k, v in ServeConfig.from_yaml(path).to_dict().items() if k != "api_key"}
    assert resolved("--config", str(path)) == want


@pytest.mark.parametrize(
    "old, new",
    [
        (["--thinking"], ["--mode", "reasoning"]),
        (["--timeout", "120"], ["--timeout-s", "120"]),
        (["--default-max-tokens", "64"], ["--max-new-tokens", "64"]),
        (["--max_new_tokens", "64"], ["-n", "64"]),
        (["--max-queue", "1", "--threads", "1"], ["--max_queue", "1", "--threads", "1"]),
    ],
)
def test_old_spellings_still_work(old, new):
    assert resolved(*old) == resolved(*new) != resolved()


def test_no_thinking_flag_wins_over_the_file(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("mode: reasoning\n")
    assert resolved("--config", str(f))["mode"] == "reasoning"
    assert (
        resolved("--config", str(f), "--no-thinking")["mode"]
        == resolved("--config", str(f), "--mode", "direct")["mode"]
        == "direct"
    )


def test_help_shows_one_spelling_and_api_key_from_env():
    r = CliRunner().invoke(app, ["--help"], terminal_width=200)
    assert "--mode" in r.output and "--max-new-tokens" in r.output and "TPRO_API_KEY" in r.output
    assert "--thinking" not in r.output and "--default-max-tokens" not in r.output
    # the key is read from the environment but never printed (a copied --print-config must not leak it)
    assert "api_key" not in resolved(env={"TPRO_API_KEY": "k"})
    assert "api_key" not in CliRunner().invoke(app, ["--print-config"], env={"TPRO_API_KEY": "s3cret"}).output
    assert resolved()["host"] == "127.0.0.1"


def test_bad_config_file_is_named(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("port: 70000\n")
    r = CliRunner().invoke(app, ["--config", str(f)])
    assert r.exit_code == 2 and str(f) in r.output and "key 'port': 70000 is out of range [0, 65535]" in r.output


def prompt_tokens(client, name: str, **kw) -> dict:
    body = {"model": name, "messages": [{"role": "user", "content": "Сколько будет 2+2?"}], "temperature": 0, **kw}
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    return r.json()["usage"]


def test_python_api_takes_the_same_settings(engine):
    """``mode`` and ``max_new_tokens`` apply to requests that do not say."""
    with TestClient(build_app(engine, ServeConfig(mode="reasoning", max_new_tokens=3))) as c:
        default = prompt_tokens(c, engine.name)
        thinking = prompt_tokens(c, engine.name, chat_template_kwargs={"enable_thinking": True})
        direct = prompt_tokens(c, engine.name, chat_template_kwargs={"enable_thinking": False}, max_tokens=5)
    assert default == thinking and default["completion_tokens"] <= 3
    assert direct["prompt_tokens"] < default["prompt_tokens"]  # reasoning opens <think> in the prompt
    assert direct["completion_tokens"] <= 5


def test_server_started_from_a_config_file(tiny_qwen2_dir, tmp_path):
    """A real ``tpro serve --config FILE`` (flags given too: they win) on the tiny model."""
    f = tmp_path / "serve.yaml"
    f.write_text(
        f"model: {tiny_qwen2_dir}\ndtype: float32\nmode: reasoning\nmax_new_tokens: 3\n"
        f"api_key: {API_KEY}\nserved_model_name: from-yaml\nport: 1\n"
    )
    proc, url = start_server(["--config", str(f)], tmp_path / "server.log")  # its --port wins over the file's
    try:
        auth = {"Authorization": f"Bearer {API_KEY}"}
        assert httpx.get(url + "/v1/models").status_code == 401  # the file's API key is on
        assert httpx.get(url + "/v1/models", headers=auth).json()["data"][0]["id"] == "from-yaml"
        with httpx.Client(base_url=url, headers=auth, timeout=60) as c:
            default = prompt_tokens(c, "from-yaml")
            direct = prompt_tokens(c, "from-yaml", chat_template_kwargs={"enable_thinking": False})
        assert default["completion_tokens"] <= 3 and direct["prompt_tokens"] < default["prompt_tokens"]
    finally:
        stop_server(proc)


@pytest.mark.embedded
def test_default_config_serves_the_embedded_model_with_its_draft(tmp_path):
    """The shipped recipe as the playground starts it: configs/serve/default.yaml + ``--draft auto``."""
    from tpro.eagle import default_head_dir

    proc, url = start_server(["--config", str(CONFIGS / "default.yaml"), "--draft", "auto"], tmp_path / "server.log")
    try:
        info = httpx.get(url + "/v1/models").json()["data"][0]
        assert info["tpro"]["speculative"] is (default_head_dir() is not None)
        with httpx.Client(base_url=url, timeout=120) as c:
            usage = prompt_tokens(c, info["id"], max_tokens=8)
        assert 0 < usage["completion_tokens"] <= 8
    finally:
        stop_server(proc)
