"""The "where to send" widgets shared by Submit and Replay (endpoint, route, key header, key), and
the Data page's "where to pull from" (endpoint and key, by the same rules)."""

from __future__ import annotations

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

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


def endpoint_picker(prefix: str, help_text: str, column: DeltaGenerator | None = None) -> str:
    """The endpoint list (this app's sandbox, a configured one, the cloud, other) and the other
    endpoint's field; the URL chosen ("" when "other" is chosen and left empty)."""
    configured = settings.ENDPOINT.from_env() or secrets_mapping().get(client.ENDPOINT_ENV)
    where = column or st.container()
    choice = where.selectbox(
        "Endpoint",
        [EMBEDDED, *([configured] if configured else []), "https://app.langwatch.ai", "other"],
        index=1 if configured else 0,
        key=f"{prefix}endpoint_choice",
        help=help_text,
    )
    other = where.text_input(
        "Other endpoint",
        key=f"{prefix}endpoint_other",
        placeholder="https://...",
        disabled=choice != "other",
    )
    return {EMBEDDED: embedded_url(), "other": other.strip()}.get(choice, choice)


def key_field(prefix: str) -> str | None:
    """A password field for the key (None when left empty: the environment's, the secrets' or,
    for the embedded sandbox, its own)."""
    typed = st.text_input(
        "API key (leave empty to use LANGWATCH_API_KEY or Streamlit secrets)",
        type="password",
        key=f"{prefix}key",
    )
    return typed or None


def target_picker(prefix: str, help_text: str) -> client.Target:
    """Endpoint, route, key header and a password field; widget keys start with `prefix`."""
    t1, t2, t3 = st.columns([2, 1, 1])
    url = endpoint_picker(prefix, help_text, t1)
    path: str = t2.selectbox("Route", client.PATHS, key=f"{prefix}path")
    auth: str = t3.selectbox(
        "Key header",
        list(client.AUTH_STYLES),
        key=f"{prefix}auth",
        format_func=lambda style: AUTH_LABELS[style],
    )
    typed = key_field(prefix)
    target = target_for(url, typed, auth, path)
    st.caption(f"Sending to {md_escape(target.url)} with {KEY_SOURCE_WORDS[target.key_source]}.")
    return target


def source_picker(prefix: str, help_text: str) -> client.Target:
    """Where to read from (the pulls' LangWatch): the same endpoints and key rules as the
    senders', without a route or header choice (the read routes take X-Auth-Token). An
    "other" endpoint left empty stays empty, for the caller to refuse, rather than falling
    back to a configured or the cloud's address."""
    url = endpoint_picker(prefix, help_text)
    typed = key_field(prefix)
    if not url:
        target = client.Target(endpoint="", key=None, key_source="none")
    else:
        target = target_for(url, typed, client.AUTH_STYLES[0], client.PATHS[0])
    st.caption(
        f"Pulling from {md_escape(target.endpoint or 'nowhere yet')} with "
        f"{KEY_SOURCE_WORDS[target.key_source]}."
    )
    return target
