"""How a question with options is shown on each Chatwoot channel, and how answers come back.

This module does no I/O: it turns a question into the message bodies to post, and a customer's
reply back into the option title it stands for. Chatwoot renders `input_select` natively on
WhatsApp (buttons up to 3, a list up to 10), the web widget, Telegram, Messenger, LINE and the
API channel; everything else (SMS, e-mail, Instagram, Twilio, …) gets a numbered text list.
Chatwoot checks none of WhatsApp's limits, so they are enforced here: titles are shortened,
lists split by ten, an interactive body is cut to 1,024 characters and is never empty.

An Instagram conversation that comes through a Facebook Page is a `Channel::FacebookPage`
conversation whose `additional_attributes.type` is `instagram_direct_message`; Chatwoot sends it
text only, so `delivery_channel` names it `Channel::Instagram` and it gets a numbered list.

Every message posted goes through `liquid_safe` (chatwoot.py, the one place that posts):
Chatwoot renders Liquid in the content of every outgoing message before it saves it
(docs/chatwoot-traffic.md, "Liquid"), and the text agentbot means must come out unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agentbot.flows import normalize

BUTTON_CHANNELS = frozenset(
    {
        "Channel::Whatsapp",
        "Channel::WebWidget",
        "Channel::Telegram",
        "Channel::FacebookPage",
        "Channel::Line",
        "Channel::Api",
    }
)
WHATSAPP = "Channel::Whatsapp"
FACEBOOK_PAGE = "Channel::FacebookPage"
INSTAGRAM = "Channel::Instagram"
INSTAGRAM_VIA_PAGE = "instagram_direct_message"  # additional_attributes.type of such a chat
WHATSAPP_BUTTONS = 3  # reply buttons; more become a list
WHATSAPP_BUTTON_TITLE = 20
WHATSAPP_LIST_TITLE = 24
WHATSAPP_LIST_ROWS = 10
WHATSAPP_BODY = 1024  # an interactive message's body text
MORE = "⋯"  # the body of the follow-up lists when a question has more than 10 options
# Liquid starts a tag with `{%` and an output with `{{`; Chatwoot keeps text between backticks
# from Liquid by wrapping it in `{% raw %}`, which a customer's `{% endraw %}` would end.
_LIQUID_MARKUP = ("{{", "{%")
_LIQUID_LITERAL = {"{": '{{ "%7B" | url_decode }}', "`": '{{ "%60" | url_decode }}'}


def delivery_channel(channel: str | None, conversation_type: str | None) -> str | None:
    """The channel whose rules a conversation's messages follow: Instagram through a Facebook
    Page is Instagram (text only), whatever Chatwoot calls its inbox."""
    if channel == FACEBOOK_PAGE and conversation_type == INSTAGRAM_VIA_PAGE:
        return INSTAGRAM
    return channel


def shows_buttons(channel: str | None) -> bool:
    """Unknown (None) is treated as able: the payload always names the channel."""
    return channel is None or channel in BUTTON_CHANNELS


def fit(title: str, limit: int) -> str:
    if len(title) <= limit:
        return title
    return title[: limit - 1].rstrip() + "…"


def sent_titles(channel: str | None, titles: Sequence[str]) -> list[str]:
    """The titles as the customer will see them (shortened on WhatsApp, kept unique)."""
    if channel != WHATSAPP:
        return list(titles)
    chunks = [titles[i : i + WHATSAPP_LIST_ROWS] for i in range(0, len(titles), WHATSAPP_LIST_ROWS)]
    result: list[str] = []
    for chunk in chunks:
        limit = WHATSAPP_BUTTON_TITLE if len(chunk) <= WHATSAPP_BUTTONS else WHATSAPP_LIST_TITLE
        seen: set[str] = set()
        for title in chunk:
            short = fit(title, limit)
            n = 2
            while normalize(short) in seen:
                suffix = f" {n}"
                short = fit(title, limit - len(suffix)).rstrip("…") + suffix
                n += 1
            seen.add(normalize(short))
            result.append(short)
    return result


def messages(
    channel: str | None, text: str, options: Sequence[tuple[str, str]]
) -> list[dict[str, Any]]:
    """The message bodies (POST /messages) that ask `text` with these (title, value) options."""
    if not shows_buttons(channel):
        lines = "\n".join(f"{i}. {title}" for i, (title, _) in enumerate(options, start=1))
        return [text_body(f"{text}\n\n{lines}" if text else lines)]
    titles = sent_titles(channel, [t for t, _ in options])
    items = [{"title": t, "value": v} for t, (_, v) in zip(titles, options, strict=True)]
    if channel == WHATSAPP:
        # Meta refuses a body over 1,024 characters, and an empty one.
        text = fit(text, WHATSAPP_BODY) if text.strip() else MORE
    if channel != WHATSAPP or len(items) <= WHATSAPP_LIST_ROWS:
        return [_select(text, items)]
    chunks = [items[i : i + WHATSAPP_LIST_ROWS] for i in range(0, len(items), WHATSAPP_LIST_ROWS)]
    return [_select(text if i == 0 else MORE, chunk) for i, chunk in enumerate(chunks)]


def expand_reply(channel: str | None, reply: str, titles: Sequence[str]) -> str:
    """The full title when the reply is a title as shortened for the channel, else the reply."""
    said = normalize(reply)
    for full, sent in zip(titles, sent_titles(channel, titles), strict=True):
        if sent != full and normalize(sent) == said:
            return full
    return reply


def text_body(text: str) -> dict[str, Any]:
    """A public text message from the bot (POST /messages)."""
    return {"content": text, "message_type": "outgoing", "private": False}


def liquid_safe(text: str) -> str:
    """`text` written so that Chatwoot's Liquid rendering gives back exactly `text`.

    Text without `{{` or `{%` is left as it is: Liquid copies it, and Chatwoot's raw blocks
    around backtick spans give the span back unchanged. Otherwise every `{` and every backtick
    becomes a Liquid output of that one character (URL-decoded, so the output itself holds
    neither), and no tag, output or backtick span is left for Liquid to act on.
    """
    if not any(markup in text for markup in _LIQUID_MARKUP):
        return text
    return "".join(_LIQUID_LITERAL.get(char, char) for char in text)


def _select(text: str, items: list[dict[str, str]]) -> dict[str, Any]:
    return {
        **text_body(text),
        "content_type": "input_select",
        "content_attributes": {"items": items},
    }
