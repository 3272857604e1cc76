"""agent: a chat agent in Python, built into agent.wasm by `theater build` (componentize-py).

State (JSON): where the model is (`endpoint`, `model`, `system`, from the manifest's
init_state), the conversation so far (`messages`, the last `max_messages` of them: what is
sent to the model), and where its transcripts are (`store`, a store id made at first use;
`conversation`, the number of the current one; `transcript`, its content hash).

A request is a question: the agent sends the system prompt, the conversation and the
question to the chat-completions endpoint through http-client (the gateway adds the API key,
a server secret the actor never sees), answers with the model's reply, keeps both in its
state and stores the whole transcript (every message, not only the last ones) in the
content store under the label `conversation-N`. Two requests are commands: `/transcript`
answers with the current transcript, read back from the store; `/reset` starts a new
conversation. A model that cannot be reached or answers an error is answered as
`error: ...`, and nothing changes. A one-way message is a question whose answer is logged.

Every host call is recorded with its result, so `theater replay agent` replays a
conversation with no model, no network and no store.
"""

from __future__ import annotations

import json

from theater_actor import Err, json_state, text
from wit_world import exports
from wit_world.imports import http_client, http_types, runtime, store, types


class ModelError(Exception):
    """The model could not answer; the request is answered with the reason."""


def _model(state: dict, question: str) -> str:
    """The model's answer to the conversation so far followed by ``question``."""
    system = [{"role": "system", "content": state["system"]}] if state.get("system") else []
    body = {"model": state["model"], "messages": [*system, *state.get("messages", []),
                                                  {"role": "user", "content": question}]}
    request = http_types.HttpRequest(method="POST", uri=state["endpoint"],
                                     headers=[("content-type", "application/json"), ("accept", "application/json")],
                                     body=json.dumps(body).encode())
    try:
        response = http_client.send_http(request)
    except Err as e:
        raise ModelError(f"the model could not be reached: {e.value}") from None
    raw = response.body or b""
    if response.status != 200:
        raise ModelError(f"the model answered {response.status}: {raw[:300].decode(errors='replace')}")
    try:
        return json.loads(raw)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise ModelError(f"the model's answer is not a chat completion ({type(e).__name__}: {e})") from None


def _label(state: dict) -> str:
    return f"conversation-{state.get('conversation', 1)}"


def _transcript(state: dict) -> list:
    """The current conversation's transcript, from the store ([] before its first turn)."""
    if "transcript" not in state:
        return []
    return json.loads(store.get(state["store"], store.ContentRef(hash=state["transcript"])))


def _turn(state: dict, question: str) -> str:
    """Asks the model; on success keeps the exchange in the state and the store."""
    answer = _model(state, question)
    exchange = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    if "store" not in state:
        state["store"] = store.new()
    transcript = _transcript(state) + exchange
    ref = store.store_at_label(state["store"], _label(state), json.dumps(transcript, indent=1).encode())
    state["transcript"] = ref.hash
    state["messages"] = (state.get("messages", []) + exchange)[-int(state.get("max_messages", 40)):]
    state["turns"] = state.get("turns", 0) + 1
    return answer


def _answer(state: dict, message: str) -> str:
    if message == "/transcript":
        return json.dumps(_transcript(state), indent=1)
    if message == "/reset":
        state["conversation"] = state.get("conversation", 1) + 1
        state["messages"] = []
        state.pop("transcript", None)
        return f"new conversation ({_label(state)})"
    try:
        return _turn(state, message)
    except ModelError as e:
        runtime.log(f"agent: {e}")
        return f"error: {e}"


class Actor(exports.Actor):
    @json_state
    def init(self, state: dict, params: tuple[str]) -> tuple[dict]:
        for key in ("endpoint", "model"):
            if not isinstance(state.get(key), str):
                raise Err(f"init_state needs {key!r} (a string): see examples/agent/manifest.toml")
        runtime.log(f"agent {params[0]}: {state['model']} at {state['endpoint']}, {state.get('turns', 0)} turns so far")
        return (state,)


class MessageServerClient(exports.MessageServerClient):
    @json_state
    def handle_send(self, state: dict, params: tuple[bytes]) -> tuple[dict]:
        """A question whose answer nobody waits for: it is logged."""
        (data,) = params
        runtime.log(f"agent: {_answer(state, text(data))}")
        return (state,)

    @json_state
    def handle_request(self, state: dict, params: tuple[str, bytes]) -> tuple[dict, tuple[bytes | None]]:
        _, data = params
        return (state, (_answer(state, text(data)).encode(),))

    @json_state
    def handle_channel_open(self, state: dict,
                            params: tuple[str, bytes]) -> tuple[dict, tuple[types.ChannelAccept]]:
        return (state, (types.ChannelAccept(accepted=False, message=None),))

    @json_state
    def handle_channel_message(self, state: dict, params: tuple[str, bytes]) -> tuple[dict]:
        return (state,)

    @json_state
    def handle_channel_close(self, state: dict, params: tuple[str]) -> tuple[dict]:
        return (state,)
