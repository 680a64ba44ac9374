"""The "where to send" widgets shared by Submit and Replay: endpoint, route, key header, key."""

from __future__ import annotations

import streamlit as st

from eventlens import client, sandbox, settings
from eventlens.ui.format import md_escape

EMBEDDED = "embedded sandbox (this app)"
AUTH_LABELS = {"x-auth-token": "X-Auth-Token", "bearer": "Authorization: Bearer"}
KEY_SOURCE_WORDS = {
    "typed": "the key typed above",
    "environment": "the LANGWATCH_API_KEY environment variable",
    "secrets": "Streamlit secrets (LANGWATCH_API_KEY)",
    "sandbox": "the sandbox's own key",
    "none": "no key (the server will answer 401)",
}


def embedded_url() -> str:
    """The sandbox served beside this app (by `eventlens ui`) on the app's own port."""
    return f"http://127.0.0.1:{st.get_option('server.port')}"


def secrets_mapping() -> dict[str, str]:
    """LANGWATCH_* values from Streamlit secrets, if a secrets file exists."""
    try:
        return {
            k: str(st.secrets[k]) for k in (client.KEY_ENV, client.ENDPOINT_ENV) if k in st.secrets
        }
    except (FileNotFoundError, KeyError, st.errors.StreamlitSecretNotFoundError):
        return {}


def target_for(url: str, typed: str | None, auth: str, path: str) -> client.Target:
    """Where a send goes: the embedded sandbox with its own key, else the usual key lookup."""
    if url.rstrip("/") == embedded_url() and not typed:
        return client.Target(embedded_url(), sandbox.default_key(), "sandbox", auth, path)
    return client.resolve_target(
        url or None, typed or None, secrets_mapping(), auth=auth, path=path
    )


def target_picker(prefix: str, help_text: str) -> client.Target:
    """Endpoint, route, key header and a password field; widget keys start with `prefix`."""
    configured = settings.ENDPOINT.from_env() or secrets_mapping().get(client.ENDPOINT_ENV)
    t1, t2, t3 = st.columns([2, 1, 1])
    choice = t1.selectbox(
        "Endpoint",
        [EMBEDDED, *([configured] if configured else []), "https://app.langwatch.ai", "other"],
        index=1 if configured else 0,
        key=f"{prefix}endpoint_choice",
        help=help_text,
    )
    other = t1.text_input(
        "Other endpoint",
        key=f"{prefix}endpoint_other",
        placeholder="https://...",
        disabled=choice != "other",
    )
    path: str = t2.selectbox("Route", client.PATHS, key=f"{prefix}path")
    auth: str = t3.selectbox(
        "Key header",
        list(client.AUTH_STYLES),
        key=f"{prefix}auth",
        format_func=lambda style: AUTH_LABELS[style],
    )
    typed = st.text_input(
        "API key (leave empty to use LANGWATCH_API_KEY or Streamlit secrets)",
        type="password",
        key=f"{prefix}key",
    )
    url = {EMBEDDED: embedded_url(), "other": other.strip()}.get(choice, choice)
    target = target_for(url, typed or None, auth, path)
    st.caption(f"Sending to {md_escape(target.url)} with {KEY_SOURCE_WORDS[target.key_source]}.")
    return target
