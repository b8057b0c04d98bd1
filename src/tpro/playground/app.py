"""The Streamlit page: two panes side by side, one prompt sent to both, answers streamed concurrently.

Run by ``tpro playground`` as ``streamlit run app.py -- --config JSON`` (see ``cli.py``). Each pane has its own
endpoint, model, reasoning toggle, temperature, max tokens and EAGLE switch, and its own conversation (the
panes' answers differ, so each keeps its own history; the user turns are shared). Both requests stream in
threads feeding queues; this script thread drains the queues into placeholders (Streamlit elements may only
be written from the script thread). A vote stores both panes' full context in SQLite; under the panes, the
human-arena leaderboard of that file (``tpro.playground.leaderboard.board``, what ``tpro playground leaderboard``
prints) is recomputed when the number of votes changes.
"""

from __future__ import annotations

import argparse
import json
import queue
import threading
import time
import uuid

import streamlit as st

from tpro.config import ConfigError
from tpro.eval.arena import ArenaError
from tpro.playground.client import PaneSettings, Result, list_models, stream_chat
from tpro.playground.leaderboard import LeaderboardConfig, board, note
from tpro.playground.presets import attribution, load_presets
from tpro.playground.store import VoteStore

SIDES = ("left", "right")
VOTE_LABELS = {"left": "← Left is better", "right": "Right is better →", "tie": "Tie", "both_bad": "Both bad"}


def page_config() -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--config", default="{}")
    args, _ = p.parse_known_args()
    cfg = json.loads(args.config)
    cfg.setdefault("db", "playground-votes.sqlite")
    for side in SIDES:
        cfg.setdefault(side, {})
        cfg[side].setdefault("url", "http://127.0.0.1:8000")
        cfg[side].setdefault("model", "")
        cfg[side].setdefault("speculative", False)
    return cfg


@st.cache_data(ttl=30, show_spinner=False)
def endpoint_models(url: str, api_key: str | None) -> tuple[list[str], bool, str | None]:
    """-> (model ids, whether the endpoint takes tpro's speculative switch with a draft loaded, error)."""
    try:
        data = list_models(url, api_key)
    except Exception as e:  # noqa: BLE001 - shown in the pane; the user can fix the URL
        return [], False, f"{type(e).__name__}: {e}"
    spec = any((m.get("tpro") or {}).get("speculative") for m in data)
    return [m["id"] for m in data], spec, None


def pane_settings(side: str, cfg: dict) -> PaneSettings:
    c = cfg[side]
    with st.expander(f"{side.capitalize()} pane: endpoint and settings", expanded=False):
        url = st.text_input(
            "Endpoint URL",
            c["url"],
            key=f"{side}_url",
            help="Any OpenAI-compatible server: tpro serve, SGLang, vLLM (…/v1 optional).",
        )
        key = (
            st.text_input("API key", c.get("api_key") or cfg.get("api_key") or "", key=f"{side}_key", type="password")
            or None
        )
        models, has_draft, err = endpoint_models(url, key)
        if err:
            st.warning(f"cannot list models at {url}: {err}")
        default = c["model"] if c["model"] in models else (models[0] if models else c["model"])
        if models:
            model = st.selectbox("Model", models, index=models.index(default), key=f"{side}_model")
        else:
            model = st.text_input("Model", default, key=f"{side}_model_text")
        reasoning = st.toggle("Reasoning (think first)", value=c.get("reasoning", False), key=f"{side}_reasoning")
        temperature = st.slider(
            "Temperature", 0.0, 2.0, float(c.get("temperature", 0.0)), 0.05, key=f"{side}_temperature"
        )
        max_tokens = st.number_input(
            "Max tokens", 1, 32768, int(c.get("max_tokens", 256)), 16, key=f"{side}_max_tokens"
        )
        eagle = st.toggle(
            "EAGLE speculative decoding",
            value=bool(c["speculative"] and has_draft),
            disabled=not has_draft,
            key=f"{side}_eagle",
            help="Per-request switch of tpro serve; off when the endpoint has no draft loaded.",
        )
    # The switch is sent only to endpoints that understand it (tpro serve with a draft).
    return PaneSettings(
        url=url,
        model=model,
        api_key=key,
        reasoning=reasoning,
        temperature=temperature,
        max_tokens=int(max_tokens),
        speculative=eagle if has_draft else None,
    )


def pane_header(side: str, s: PaneSettings) -> None:
    flags = [
        "reasoning" if s.reasoning else "direct",
        f"T={s.temperature:g}",
        "EAGLE" if s.speculative else "baseline decoding",
    ]
    st.markdown(f"**{side.capitalize()}** · `{s.model}` · {' · '.join(flags)}")


def show_answer(res: dict) -> None:
    if res["reasoning"]:
        with st.expander("Reasoning", expanded=False):
            st.markdown(res["reasoning"])
    st.markdown(res["answer"] or "_(no answer)_")
    st.caption("telemetry: " + Result(**res).summary())


def history(turns: list[dict], side: str) -> list[dict]:
    """The pane's conversation so far: shared user turns, this pane's own answers."""
    msgs = []
    for t in turns:
        msgs.append({"role": "user", "content": t["prompt"]})
        msgs.append({"role": "assistant", "content": t[side]["answer"]})
    return msgs


def run_both(prompt: str, settings: dict[str, PaneSettings], slots: dict) -> dict[str, dict]:
    """Stream both panes at once; -> {side: Result dict}."""
    qs = {side: queue.Queue() for side in SIDES}
    msgs = {side: history(st.session_state.turns, side) + [{"role": "user", "content": prompt}] for side in SIDES}
    stop = threading.Event()

    def pump(side: str) -> None:
        try:
            for ev in stream_chat(settings[side], msgs[side]):
                qs[side].put(ev)
                if stop.is_set():  # leaving the stream closes the connection: the server cancels generation
                    break
        except Exception as e:  # noqa: BLE001 - shown in the pane instead of a dead thread
            qs[side].put(("done", Result(error=f"{type(e).__name__}: {e}")))

    threads = [threading.Thread(target=pump, args=(side,), daemon=True) for side in SIDES]
    for t in threads:
        t.start()
    text = {side: {"reasoning": "", "content": ""} for side in SIDES}
    results: dict[str, Result] = {}
    try:
        drain(qs, text, results, slots)
    finally:  # also when Streamlit stops this run (the user reloaded or sent another prompt)
        stop.set()
    for side in SIDES:
        slots[side]["reasoning"].empty()
        slots[side]["answer"].empty()
    return {side: results[side].to_dict() for side in SIDES}


def drain(qs: dict, text: dict, results: dict, slots: dict) -> None:
    """Move streamed pieces from the pane threads' queues into the placeholders until both are done."""
    while len(results) < len(SIDES):
        changed = set()
        for side in SIDES:
            while True:
                try:
                    kind, payload = qs[side].get_nowait()
                except queue.Empty:
                    break
                if kind == "done":
                    results[side] = payload
                else:
                    text[side][kind] += payload
                changed.add(side)
        for side in changed:
            if side not in results:
                if text[side]["reasoning"]:
                    slots[side]["reasoning"].caption("reasoning: " + text[side]["reasoning"][-1500:])
                slots[side]["answer"].markdown(text[side]["content"] + " ▌")
        time.sleep(0.05)


def record_vote(store: VoteStore, vote: str) -> None:
    ss = st.session_state
    turn = ss.turns[-1]
    sides = {}
    for side in SIDES:
        msgs = history(ss.turns, side)
        sides[side] = {
            "endpoint": turn["settings"][side]["url"],
            "model": turn["settings"][side]["model"],
            "settings": turn["settings"][side],
            "messages": msgs,
            "answer": turn[side]["answer"],
            "reasoning": turn[side]["reasoning"],
            "telemetry": turn[side]["telemetry"],
            "client": {"ttft_s": turn[side]["ttft_s"], "total_s": turn[side]["total_s"], "error": turn[side]["error"]},
        }
    turn["vote"] = vote
    turn["vote_id"] = store.add(vote, sides["left"], sides["right"], ss.session_id, len(ss.turns))


# 100 bootstrap fits: 0.34 s on 93 votes, 0.53 s on 930 (2-core CPU); once per vote, not on every rerun
@st.cache_data(max_entries=16, show_spinner="Fitting the leaderboard…")
def cached_board(db: str, votes: int, baseline: str | None) -> dict:
    """``board`` of the votes in ``db``; ``votes`` (their count) is only the cache key, so a new vote recomputes.
    The command's default rounds and seed, so the page and ``tpro playground leaderboard`` show the same numbers."""
    return board(list(VoteStore(db).rows()), LeaderboardConfig(db=db, baseline=baseline), db)


def leaderboard_section(db: str, votes: int) -> None:
    """The human-arena leaderboard of the votes file, or why there is none yet."""
    with st.expander("Leaderboard (human arena)", expanded=False):
        if not votes:
            st.info("No votes yet: vote under a pair of answers and the leaderboard appears here.")
            return
        try:
            result = cached_board(db, votes, None)
        except (ConfigError, ArenaError) as e:  # only self-votes so far: the message says how to compare two
            st.info(str(e))
            return
        names = [r["model"] for r in result["rows"]]
        baseline = st.selectbox(
            "Baseline", ["(none)", *names], key="board_baseline", help="Scores 1000; win rates are against it."
        )
        if baseline != "(none)":
            result = cached_board(db, votes, baseline)
        st.markdown(result["markdown"])
        skipped = " (same model and mode in both panes)" if result["self_votes"] else ""
        st.caption(
            f"{note(result)}{skipped}. Bradley-Terry scores on the Elo scale, 95% intervals from {result['rounds']} "
            "bootstrap rounds; ties and 'both bad' count half a win each way. Contestants are a model with its mode "
            "and temperature: to compare two, give the panes different models, or one reasoning or another "
            f"temperature. Style control and a plot: `tpro playground leaderboard --db {db}`."
        )


def main() -> None:
    st.set_page_config(page_title="tpro playground", page_icon="⚖️", layout="wide")
    cfg = page_config()
    store = VoteStore(cfg["db"])
    ss = st.session_state
    ss.setdefault("turns", [])
    ss.setdefault("session_id", uuid.uuid4().hex[:12])
    votes = store.count()  # after a vote button's callback stored the vote: this run sees it

    with st.sidebar:
        st.header("Presets")
        presets = load_presets()
        domain = st.selectbox("Domain", list(presets), key="preset_domain")
        titles = [p["title"] for p in presets[domain]]
        title = st.selectbox("Prompt", titles, key="preset_title")
        chosen = presets[domain][titles.index(title)]
        st.caption(chosen["prompt"][:300])
        if chosen.get("answer"):
            st.caption(f"Reference answer: {chosen['answer']}")
        send_preset = st.button("Send preset to both", use_container_width=True)
        st.caption(attribution())
        st.divider()
        if st.button("New conversation", use_container_width=True):
            ss.turns = []
        st.caption(f"Votes: {votes} in `{cfg['db']}`")
        if cfg.get("note"):
            st.info(cfg["note"])

    st.title("tpro playground")
    cols = dict(zip(SIDES, st.columns(2, gap="large"), strict=True))
    settings = {}
    for side in SIDES:
        with cols[side]:
            settings[side] = pane_settings(side, cfg)
            pane_header(side, settings[side])
            for t in ss.turns:
                st.chat_message("user").markdown(t["prompt"])
                with st.chat_message("assistant"):
                    show_answer(t[side])

    typed = st.chat_input("Ask both models…")
    prompt = typed or (chosen["prompt"] if send_preset else None)
    if prompt:
        slots = {}
        for side in SIDES:
            with cols[side]:
                st.chat_message("user").markdown(prompt)
                with st.chat_message("assistant"):
                    slots[side] = {"reasoning": st.empty(), "answer": st.empty()}
        results = run_both(prompt, settings, slots)
        ss.turns.append(
            {"prompt": prompt, **results, "vote": None, "settings": {side: settings[side].to_dict() for side in SIDES}}
        )
        st.rerun()

    if ss.turns:
        last = ss.turns[-1]
        if last["vote"]:
            st.success(
                f"Vote saved: {VOTE_LABELS[last['vote']]} (#{last['vote_id']}). Ask a follow-up or start a "
                "new conversation."
            )
        else:
            st.markdown("**Which answer is better?**")
            for col, vote in zip(st.columns(4), VOTE_LABELS, strict=True):
                col.button(
                    VOTE_LABELS[vote],
                    key=f"vote_{vote}_{len(ss.turns)}",
                    use_container_width=True,
                    on_click=record_vote,
                    args=(store, vote),
                )

    leaderboard_section(cfg["db"], votes)


if __name__ == "__main__":  # Streamlit runs this file as __main__
    main()
