"""The pieces every view is made of, each clipped to the limit Slack sets on it (research/slack.md section 0)."""

from __future__ import annotations

from typing import Any

Block = dict[str, Any]
View = dict[str, Any]

MAX_BLOCKS = 100
MAX_TEXT = 3000
MAX_TITLE = 24  # modal title, submit and close
MAX_OPTION_TEXT = 75
MAX_OPTION_VALUE = 150
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_CONTEXT_ELEMENTS = 10
MAX_ACTIONS_ELEMENTS = 25
MAX_OPTIONS = 100
MAX_METADATA = 3000


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plain(text: str, limit: int = MAX_TEXT) -> dict[str, Any]:
    return {"type": "plain_text", "text": clip(text, limit), "emoji": True}


def mrkdwn(text: str, limit: int = MAX_TEXT) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": clip(text, limit)}


def escape(text: str) -> str:
    """Text from a calendar shown in mrkdwn: Slack's three control characters escaped, so a title such as
    `<!channel>` or `<https://x|y>` is shown, not acted on."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def section(text: str, *, accessory: dict[str, Any] | None = None, block_id: str | None = None) -> Block:
    block: Block = {"type": "section", "text": mrkdwn(text)}
    if accessory is not None:
        block["accessory"] = accessory
    if block_id is not None:
        block["block_id"] = block_id
    return block


def header(text: str) -> Block:
    return {"type": "header", "text": plain(text, 150)}


def context(*texts: str) -> Block:
    return {"type": "context", "elements": [mrkdwn(t) for t in texts[:MAX_CONTEXT_ELEMENTS]]}


def divider() -> Block:
    return {"type": "divider"}


def button(text: str, action_id: str, value: str = "", *, style: str | None = None, url: str | None = None) -> Block:
    element: Block = {"type": "button", "text": plain(text, MAX_BUTTON_TEXT), "action_id": action_id}
    if value:
        if len(value) > MAX_BUTTON_VALUE:
            raise ValueError(f"button value of {len(value)} characters; Slack takes {MAX_BUTTON_VALUE}")
        element["value"] = value
    if style is not None:
        element["style"] = style
    if url is not None:
        element["url"] = url
    return element


def actions(*elements: Block, block_id: str | None = None) -> Block:
    block: Block = {"type": "actions", "elements": list(elements[:MAX_ACTIONS_ELEMENTS])}
    if block_id is not None:
        block["block_id"] = block_id
    return block


def option(text: str, value: str) -> dict[str, Any]:
    if len(value) > MAX_OPTION_VALUE:
        raise ValueError(f"option value of {len(value)} characters; Slack takes {MAX_OPTION_VALUE}")
    return {"text": plain(text, MAX_OPTION_TEXT), "value": value}


def within_blocks(blocks: list[Block], *, more: str = "more not shown") -> list[Block]:
    """At most MAX_BLOCKS blocks; a longer list ends with a line saying how many were left out."""
    if len(blocks) <= MAX_BLOCKS:
        return blocks
    kept = blocks[: MAX_BLOCKS - 1]
    return [*kept, context(f"{len(blocks) - len(kept)} {more}")]


def modal(title: str, blocks: list[Block], *, callback_id: str | None = None, submit: str | None = None,
          close: str = "Close", private_metadata: str = "") -> View:
    if len(private_metadata) > MAX_METADATA:
        raise ValueError(f"private_metadata of {len(private_metadata)} characters; Slack takes {MAX_METADATA}")
    view: View = {"type": "modal", "title": plain(title, MAX_TITLE), "close": plain(close, MAX_TITLE),
                  "blocks": within_blocks(blocks)}
    if callback_id is not None:
        view["callback_id"] = callback_id
    if submit is not None:
        view["submit"] = plain(submit, MAX_TITLE)
    if private_metadata:
        view["private_metadata"] = private_metadata
    return view


def loading(title: str) -> View:
    """Opened at once with the trigger (it expires in 3 s); the real view replaces it with views.update."""
    return modal(title, [section(":hourglass_flowing_sand: Loading…")])


def failure(title: str, message: str) -> View:
    return modal(title, [section(f":warning: {escape(message)}")])
