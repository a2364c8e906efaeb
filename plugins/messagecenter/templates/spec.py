"""What a template is: its content as loaded or published, and a published row.

Channels are :class:`~messagecenter.core.types.Channel` codes; which fields each channel uses is
decided here, for the file loader and for rendering alike.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from messagecenter.core.types import Channel

TEXT_FIELDS = ("subject", "html", "text")
# Push display options, sent as they are (not templates): a badge count, a sound, a collapse id (a
# newer message replaces an older one not yet shown), an iOS thread id (notifications grouped).
PUSH_OPTIONS = ("badge", "sound", "collapse_id", "thread_id")
# What each channel uses; anything else is refused, so a field that would be silently ignored
# (an SMS subject, an e-mail data object) is caught when the file is loaded.
CHANNEL_FIELDS: dict[Channel, tuple[str, ...]] = {
    Channel.EMAIL: ("subject", "html", "text", "list_unsubscribe"),
    Channel.SMS: ("text",),
    Channel.IOS: ("subject", "text", "data", "badge", "sound", "collapse_id", "thread_id"),
    Channel.ANDROID: ("subject", "text", "data", "badge", "sound", "collapse_id"),  # no threads
}


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class TemplateSpec:
    """A template's content, as loaded from a file or received from the control instance.

    :param event_type: the event type it renders.
    :param channel: a :class:`~messagecenter.core.types.Channel` code.
    :param subject: e-mail subject / push title.
    :param html: e-mail HTML part.
    :param text: e-mail text part, SMS text or push body.
    :param data: push data; string values (at any depth) are templates.
    :param list_unsubscribe: e-mail: carry RFC 8058 one-click unsubscribe headers.
    :param badge: push: the app icon's badge count (iOS badge, Android notification count).
    :param sound: push: the sound played (a file of the app, or ``default``).
    :param collapse_id: push: a newer message with the same id replaces an older one not yet shown.
    :param thread_id: iOS push: notifications with the same thread id are grouped.
    :param template_id: publish under this id (control instance); ``None`` lets
        :func:`publish_templates` pick the id and the next version.
    :param version: the version to publish, given together with ``template_id``.
    """

    event_type: str
    channel: int
    subject: str | None = None
    html: str | None = None
    text: str | None = None
    data: dict[str, Any] | None = field(default=None, hash=False)
    template_id: int | None = None
    version: int | None = None
    list_unsubscribe: bool = False
    badge: int | None = None
    sound: str | None = None
    collapse_id: str | None = None
    thread_id: str | None = None

    def __post_init__(self) -> None:
        if (self.template_id is None) != (self.version is None):
            raise ValueError("template_id and version are given together or not at all")

    @property
    def content_hash(self) -> str:
        """sha256 of the content (ids excluded): an unchanged file publishes nothing new."""
        content = {
            "event_type": self.event_type,
            "channel": int(self.channel),
            "subject": self.subject,
            "html": self.html,
            "text": self.text,
            "data": self.data,
        }
        if self.list_unsubscribe:  # only when set: the hashes of earlier templates stay as they were
            content["list_unsubscribe"] = True
        for name in PUSH_OPTIONS:  # the same
            if (value := getattr(self, name)) is not None:
                content[name] = value
        return hashlib.sha256(_canonical_json(content).encode()).hexdigest()


@dataclass(frozen=True)
class PublishedVersion:
    """What :func:`publish_templates` did for one spec: a new version (``created``) or the latest kept."""

    event_type: str
    channel: int
    template_id: int
    version: int
    created: bool


@dataclass(frozen=True)
class PublishedTemplate:
    """One version of a template as stored (``mc.published_template``, or control's ``mc.template``)."""

    id: int
    template_id: int
    version: int
    event_type: str
    channel: int
    subject: str | None
    html: str | None
    text: str | None
    data: dict[str, Any] | None = field(default=None, hash=False)
    content_hash: str | None = None
    list_unsubscribe: bool = False
    badge: int | None = None
    sound: str | None = None
    collapse_id: str | None = None
    thread_id: str | None = None

    def spec(self) -> TemplateSpec:
        """Its content, to publish under the same id and version elsewhere (control -> execution)."""
        return TemplateSpec(
            self.event_type,
            self.channel,
            self.subject,
            self.html,
            self.text,
            self.data,
            template_id=self.template_id,
            version=self.version,
            list_unsubscribe=self.list_unsubscribe,
            badge=self.badge,
            sound=self.sound,
            collapse_id=self.collapse_id,
            thread_id=self.thread_id,
        )
