"""The side-by-side playground (``tpro playground``): a Streamlit page with two panes, each talking to an
OpenAI-compatible endpoint over HTTP (a local ``tpro serve``, SGLang, vLLM, ...), votes kept in SQLite and
exported as DPO preference pairs.

It deliberately knows nothing about models or the engine: only HTTP, the OpenAI wire format and its
extensions (``reasoning_content``, ``telemetry``, ``speculative``).
"""
