"""Teams and Discord webhook bodies rendered to Markdown: one test per real payload, then the edges.

Where each fixture comes from:

tests/fixtures/teams/
  connector_card.json           Microsoft Teams docs, "Create and send messages", example connector message
                                https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using
  text_only.json                the body Ansible's office_365_connector_card module sends for its documented
                                "simple Connector Card" example (text: 'Hello, World!')
                                https://docs.ansible.com/ansible/latest/collections/community/general/office_365_connector_card_module.html
  ansible_full_format.json      the body the same module sends for its "full format" example (snake_case keys
                                turned to camelCase as the module does)
  outlook_get_started.json      Outlook actionable messages docs, "Get started … via connectors"
                                https://learn.microsoft.com/en-us/outlook/actionable-messages/actionable-messages-via-connectors
  adaptive_activity_update.json Adaptive Cards sample "Activity Update"
                                https://github.com/microsoft/AdaptiveCards/blob/main/samples/v1.0/Scenarios/ActivityUpdate.json
  workflow_adaptive_card.json   Teams docs, "Send Adaptive Cards using an Incoming Webhook" (the wrapped
                                form that Workflows / Power Automate "When a Teams webhook request is
                                received" takes)
                                https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using
tests/fixtures/discord/
  content_only.json, embeds_only.json, two_embeds.json, embed_timestamp.json
                                "Discord Webhooks Guide", structure pages (content, embeds, embed/timestamp)
                                https://birdie0.github.io/discord-webhooks-guide/structure/content.html
  webhook_example.json          the same guide's full "Webhook example"
                                https://birdie0.github.io/discord-webhooks-guide/discord_webhook.html
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.strategies import vocabulary
from webhooks import discord, teams
from webhooks.message import DialectError, Rendered

FIXTURES = Path(__file__).parent / "fixtures"
TEAMS = sorted((FIXTURES / "teams").glob("*.json"))
DISCORD = sorted((FIXTURES / "discord").glob("*.json"))
SLACK: dict[str, Any] = {"text": "x"}


def load(kind: str, name: str) -> dict[str, Any]:
    """A fixture body."""
    return json.loads((FIXTURES / kind / name).read_text(encoding="utf-8"))


# --- Teams: one test per fixture ---------------------------------------------------------------


def test_teams_connector_card_from_the_teams_docs() -> None:
    rendered = teams.render(load("teams", "connector_card.json"))
    assert rendered.content == (
        "**Larry Bryant created a new task**\n"
        "_On Project Tango_\n"
        "\n"
        "- **Assigned to**: Unassigned\n"
        "- **Due date**: Mon May 01 2017 17:07:18 GMT-0700 (Pacific Daylight Time)\n"
        "- **Status**: Not started\n"
        "\n"
        "[Learn More](https://docs.microsoft.com/outlook/actionable-messages)"
    )
    assert rendered.dropped == ("ActionCard",)  # the three forms: comment, due date, status
    assert rendered.username is None and rendered.channel is None


def test_teams_text_only_card() -> None:
    assert teams.render(load("teams", "text_only.json")) == Rendered("Hello, World!")


def test_teams_card_with_title_text_and_open_uri() -> None:
    rendered = teams.render(load("teams", "outlook_get_started.json"))
    assert rendered.content == (
        "**Visit the Outlook Dev Portal**\n"
        "\n"
        "Click **Learn More** to learn more about Actionable Messages!\n"
        "\n"
        "[Learn More](https://docs.microsoft.com/en-us/outlook/actionable-messages)"
    )
    assert rendered.dropped == ()


def test_teams_full_format_card_with_sections_images_and_section_actions() -> None:
    lorem = (
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut "
        "labore et dolore magna aliqua."
    )
    image = "[This is the image's alternate text](http://connectorsdemo.azurewebsites.net/images/"
    rendered = teams.render(load("teams", "ansible_full_format.json"))
    # Titles that already hold bold text are kept as written (bold cannot nest).
    assert rendered.content == (
        "This is the **card's title** property\n"
        "\n"
        f"This is the **card's text** property. {lorem}\n"
        "\n"
        "This is the **section's title** property\n"
        "\n"
        "This is the section's **activityTitle** property\n"
        "This is the section's **activitySubtitle** property\n"
        "This is the section's **activityText** property.\n"
        "\n"
        f"This is the section's text property. {lorem}\n"
        "\n"
        "- **This is a fact name**: This is a fact value\n"
        "- **This is a fact name**: This is a fact value\n"
        "- **This is a fact name**: This is a fact value\n"
        "\n"
        f"{image}WIN12_Scene_01.jpg)\n"
        f"{image}MicrosoftSurface_024_Cafe_OH-06315_VS_R1c.jpg)\n"
        f"{image}WIN12_Scene_01.jpg)\n"
        f"{image}WIN12_Anthony_02.jpg)\n"
        "\n"
        "[Action's name prop](http://...)\n"
        "\n"
        "This is the title of a **second section**\n"
        "\n"
        "This second section is visually separated from the first one by setting its **startGroup** "
        "property to true."
    )
    assert rendered.dropped == ("ActionCard", "HttpPOST")


def test_teams_bare_adaptive_card_sample() -> None:
    rendered = teams.render(load("teams", "adaptive_activity_update.json"))
    assert rendered.content == (
        "**Publish Adaptive Card schema**\n"
        "\n"
        "[image](https://pbs.twimg.com/profile_images/3647943215/d7f12830b3c17a5a9e4afcc370e3a37e_400x400.jpeg)\n"
        "\n"
        "**Matt Hidinger**\n"
        "\n"
        "Created 2017-02-14\n"
        "\n"
        "Now that we have defined the main rules and features of the format, we need to produce a schema "
        "and publish it to GitHub. The schema will be the starting point of our reference documentation.\n"
        "\n"
        "- **Board**: Adaptive Card\n"
        "- **List**: Backlog\n"
        "- **Assigned to**: Matt Hidinger\n"
        "- **Due date**: Not set\n"
        "\n"
        "[View](http://adaptivecards.io)"
    )
    assert rendered.dropped == ("Action.ShowCard",)


def test_teams_workflow_wrapped_adaptive_card() -> None:
    rendered = teams.render(load("teams", "workflow_adaptive_card.json"))
    assert rendered == Rendered(
        "For Samples and Templates, see [https://adaptivecards.io/samples](https://adaptivecards.io/samples)"
    )


# --- Discord: one test per fixture -------------------------------------------------------------


def test_discord_content_only() -> None:
    assert discord.render(load("discord", "content_only.json")) == Rendered("*reads manual*")


def test_discord_full_webhook_example() -> None:
    rendered = discord.render(load("discord", "webhook_example.json"))
    assert rendered.content == (
        "Text message. Up to 2000 characters.\n"
        "\n"
        "[Birdie♫](https://www.reddit.com/r/cats/)\n"
        "**[Title](https://google.com/)**\n"
        "Text message. You can use Markdown here. *Italic* **bold** __underline__ ~~strikeout~~ "
        "[hyperlink](https://google.com) `code`\n"
        "**Text**: More text\n"
        "**Even more text**: Yup\n"
        '**Use `"inline": true` parameter, if you want to display fields in the same line.**: okay...\n'
        "**Thanks!**: You're welcome :wink:\n"
        "[image](https://upload.wikimedia.org/wikipedia/commons/5/5a/A_picture_from_China_every_day_108.jpg)\n"
        "[thumbnail](https://upload.wikimedia.org/wikipedia/commons/3/38/4-Nature-Wallpapers-2014-1_ukaavUI.jpg)\n"
        "Woah! So cool! :smirk:"
    )
    assert rendered.username == "Webhook"
    assert rendered.dropped == ()  # avatar_url is accepted silently


def test_discord_embeds_only() -> None:
    assert discord.render(load("discord", "embeds_only.json")) == Rendered("**Hello!**\nHi! :grinning:")


def test_discord_two_embeds() -> None:
    assert discord.render(load("discord", "two_embeds.json")) == Rendered("**Meow!**\n\n**Meow-meow!**")


def test_discord_embed_timestamp_is_shown_in_utc() -> None:
    rendered = discord.render(load("discord", "embed_timestamp.json"))
    assert rendered == Rendered("Time travel!\n2015-12-31 12:00 UTC")


# --- detection -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", TEAMS, ids=lambda p: p.name)
def test_teams_fixtures_are_teams_and_not_discord(path: Path) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert teams.is_teams(data)
    assert not discord.is_discord(data)


@pytest.mark.parametrize("path", DISCORD, ids=lambda p: p.name)
def test_discord_fixtures_are_discord_and_not_teams(path: Path) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert discord.is_discord(data)
    assert not teams.is_teams(data)


@pytest.mark.parametrize(
    "body",
    [
        SLACK,
        {"text": "x", "username": "ci", "icon_emoji": ":robot:"},
        {"text": "x", "attachments": [{"fallback": "f", "text": "t", "color": "good"}]},
        {"attachments": [{"fallback": "f", "title": "t"}]},
        {"text": "x", "title": "Slack never sends a title, but it is not a card without a card key"},
        {"Content": "Chime"},
        {"type": "message", "text": "a bot activity without a card"},
        {},
        [],
        "text",
        None,
    ],
)
def test_other_bodies_are_neither_teams_nor_discord(body: object) -> None:
    assert not teams.is_teams(body)
    assert not discord.is_discord(body)


def test_a_message_card_without_type_is_recognised_by_its_card_only_keys() -> None:
    # pymsteams sends no "@type": {"title": …, "text": …, "themeColor": …}
    body = {"title": "Build", "text": "passed", "themeColor": "00FF00"}
    assert teams.is_teams(body)
    assert teams.render(body) == Rendered("**Build**\n\npassed")
    assert not teams.is_teams({**body, "username": "ci"})  # a key no MessageCard has: not a guess


def test_discord_detection_needs_content_or_a_list_of_embeds() -> None:
    assert discord.is_discord({"content": "hi", "username": "ci"})
    assert discord.is_discord({"embeds": []})
    assert not discord.is_discord({"embeds": "x"})
    assert not discord.is_discord({"content": "hi", "text": "slack"})
    assert not discord.is_discord({"content": "hi", "Content": "chime"})


# --- what cannot be shown is named --------------------------------------------------------------


def test_adaptive_inputs_and_submit_buttons_are_named_as_dropped() -> None:
    card = {
        "type": "AdaptiveCard",
        "body": [
            {"type": "TextBlock", "text": "Approve the deploy?", "size": "large"},
            {"type": "Input.Text", "id": "reason"},
            {"type": "Table", "fallback": "drop"},
            {"type": "Carousel", "fallback": {"type": "TextBlock", "text": "see the card in Teams"}},
            {"type": "TextBlock", "text": "hidden", "isVisible": False},
        ],
        "actions": [{"type": "Action.Submit", "title": "Approve"}],
    }
    rendered = teams.render(card)
    assert rendered.content == "### Approve the deploy?\n\nsee the card in Teams"
    assert rendered.dropped == ("Input.Text", "Action.Submit")
    assert rendered.text() == (
        "### Approve the deploy?\n\nsee the card in Teams\n\n_(not shown: Input.Text, Action.Submit)_"
    )


def test_rich_text_mentions_and_times_in_an_adaptive_card() -> None:
    card = {
        "type": "AdaptiveCard",
        "body": [
            {
                "type": "RichTextBlock",
                "inlines": [
                    "Deploy ",
                    {"type": "TextRun", "text": "failed", "weight": "bolder"},
                    " for ",
                    {"type": "TextRun", "text": "<at>Ana</at>", "italic": True},
                    {
                        "type": "TextRun",
                        "text": " (log)",
                        "selectAction": {"type": "Action.OpenUrl", "url": "https://ci.example/1"},
                    },
                ],
            },
            {"type": "TextBlock", "text": "at {{TIME(2024-05-01T10:30:00+02:00)}}"},
        ],
    }
    assert teams.render(card).content == (
        "Deploy **failed** for _@Ana_[(log)](https://ci.example/1)\n\nat 08:30 UTC"
    )


def test_only_web_and_mail_links_become_links() -> None:
    card = {
        "@type": "MessageCard",
        "text": "t",
        "potentialAction": [
            {"@type": "OpenUri", "name": "Run", "targets": [{"os": "default", "uri": "javascript:alert(1)"}]},
            {"@type": "ViewAction", "name": "Open", "target": ["https://example.com/a b"]},
        ],
    }
    assert teams.render(card).content == "t\n\nRun · [Open](https://example.com/a%20b)"


def test_discord_components_poll_and_attachments_are_named_as_dropped() -> None:
    body = {"content": "vote", "components": [{"type": 1}], "poll": {"question": {"text": "?"}}, "tts": True}
    assert discord.render(body) == Rendered("vote", dropped=("components", "poll"))
    only_poll = discord.render({"content": "", "poll": {"question": {"text": "?"}}})
    assert only_poll.content == "" and only_poll.text() == "_(not shown: poll)_"


# --- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"@type": "MessageCard", "@context": "https://schema.org/extensions"},
        {"@type": "MessageCard", "text": "   ", "title": ["not", "text"]},
        {"type": "AdaptiveCard", "body": []},
        {"type": "message", "attachments": [{"contentType": teams.ADAPTIVE_TYPE, "content": "x"}]},
    ],
)
def test_a_teams_card_with_nothing_to_show_is_refused(body: dict[str, Any]) -> None:
    with pytest.raises(DialectError) as caught:
        teams.render(body)
    assert (caught.value.status, caught.value.code) == (400, "invalid_payload")
    assert "nothing to show" in caught.value.message


def test_the_refusal_names_what_the_card_held() -> None:
    card = {"type": "AdaptiveCard", "body": [{"type": "Input.Text", "id": "x"}]}
    with pytest.raises(DialectError, match=r"it holds only: Input\.Text"):
        teams.render(card)


def test_teams_success_text() -> None:
    assert teams.SUCCESS_TEXT == "1"


@pytest.mark.parametrize(
    "body",
    [{}, {"content": ""}, {"content": "  \n", "embeds": []}, {"embeds": [{"color": 5}]}, {"username": "x"}],
)
def test_a_discord_body_with_nothing_to_post_is_refused_with_50006(body: dict[str, Any]) -> None:
    with pytest.raises(DialectError) as caught:
        discord.render(body)
    assert (caught.value.status, caught.value.code, caught.value.message) == (
        400,
        "50006",
        "Cannot send an empty message",
    )


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"content": ["x"]}, "content: Must be a string."),
        ({"content": "x", "username": {"a": 1}}, "username: Must be a string."),
        ({"content": "x", "embeds": "x"}, "embeds: Must be an array."),
        ({"embeds": [{"title": "t"}] * 11}, "embeds: Must be 10 or fewer in length."),
        ({"embeds": ["x"]}, "embeds.0: Must be an object."),
        ({"embeds": [{"title": True}]}, "embeds.0.title: Must be a string."),
        ({"embeds": [{"author": "me"}]}, "embeds.0.author: Must be an object."),
        ({"embeds": [{"fields": [{"name": "n"}]}]}, "embeds.0.fields.0.value: This field is required"),
        ({"embeds": [{"timestamp": "yesterday"}]}, "embeds.0.timestamp: Could not parse yesterday."),
        ([], "body: Must be a JSON object."),
    ],
)
def test_a_discord_field_of_the_wrong_type_is_refused_with_50035(body: Any, detail: str) -> None:
    with pytest.raises(DialectError) as caught:
        discord.render(body)
    assert (caught.value.status, caught.value.code) == (400, "50035")
    assert caught.value.message.startswith(f"Invalid Form Body: {detail}")


def test_discord_error_body() -> None:
    assert discord.error_body("50006", "Cannot send an empty message") == {
        "message": "Cannot send an empty message",
        "code": 50006,
    }


def test_discord_message_object_for_wait_true() -> None:
    sent = datetime(2017, 7, 11, 19, 27, 7, 299000, tzinfo=timezone(timedelta(hours=2)))
    assert discord.message_object("m1", "room1", "hook1", "Build Bot", "hello", sent) == {
        "id": "m1",
        "type": 0,
        "content": "hello",
        "channel_id": "room1",
        "author": {
            "id": "hook1",
            "username": "Build Bot",
            "avatar": None,
            "discriminator": "0000",
            "bot": True,
        },
        "attachments": [],
        "embeds": [],
        "mentions": [],
        "mention_roles": [],
        "pinned": False,
        "mention_everyone": False,
        "tts": False,
        "timestamp": "2017-07-11T17:27:07.299000+00:00",
        "edited_timestamp": None,
        "flags": 0,
        "components": [],
        "webhook_id": "hook1",
    }
    naive = discord.message_object("m", "c", "w", "u", "x", datetime(2024, 1, 1))
    assert naive["timestamp"] == datetime(2024, 1, 1, tzinfo=UTC).isoformat(timespec="microseconds")


# --- robustness ----------------------------------------------------------------------------------


def test_deeply_nested_containers_stop_before_the_recursion_limit() -> None:
    element: dict[str, Any] = {"type": "TextBlock", "text": "deep"}
    for _ in range(5000):
        element = {"type": "Container", "items": [element]}
    card = {"type": "AdaptiveCard", "body": [element, {"type": "TextBlock", "text": "shallow"}]}
    assert teams.render(card) == Rendered("shallow", dropped=("deeply nested elements",))


def test_text_that_cannot_be_stored_is_cleaned() -> None:
    assert discord.render({"content": "a\x00b\ud800c"}).content == "ab?c"
    assert teams.render({"@type": "MessageCard", "text": "a\x00b"}).content == "ab"


_KEYS, _SCALARS, JSON_VALUES = vocabulary(
    [
        *("@type", "@context", "type", "text", "title", "summary", "themeColor", "sections", "facts"),
        *("name", "value", "potentialAction", "targets", "target", "uri", "os", "images", "image"),
        *("heroImage", "activityTitle", "body", "items", "columns", "actions", "url", "inlines", "weight"),
        *("size", "fallback", "isVisible", "attachments", "contentType", "content", "embeds", "fields"),
        *("author", "footer", "thumbnail", "timestamp", "username", "description", "poll", "selectAction"),
    ],
    [
        *("MessageCard", "AdaptiveCard", "message", "TextBlock", "Container", "ColumnSet", "FactSet"),
        *("Image", "RichTextBlock", "ActionSet", "Action.OpenUrl", "OpenUri", "ViewAction", "drop"),
        *(teams.ADAPTIVE_TYPE, teams.CONNECTOR_TYPE, "https://example.com", "2015-12-31T12:00:00Z"),
        *("bolder", "large", "{{DATE(9999-12-31T23:59:59-05:00)}}", "<at>x</at>", "\x00\ud800"),
    ],
)
CARDS = st.builds(
    lambda kind, rest: {**rest, **kind},
    st.sampled_from([{"@type": "MessageCard"}, {"type": "AdaptiveCard"}, {"type": "message"}, {}]),
    st.dictionaries(_KEYS, JSON_VALUES, max_size=6),
)
# Shapes close to real cards and bodies, so that rendering (not only refusing) is exercised too.
_ELEMENT_TYPES = ["TextBlock", "Image", "FactSet", "RichTextBlock", "ActionSet", "Input.Text", "Media"]
ELEMENTS = st.recursive(
    st.fixed_dictionaries(
        {"type": st.sampled_from(_ELEMENT_TYPES)},
        optional={k: JSON_VALUES | _SCALARS for k in ("text", "url", "facts", "inlines", "actions")}
        | {k: _SCALARS for k in ("weight", "size", "isVisible", "altText")},
    ),
    lambda children: st.fixed_dictionaries(
        {"type": st.sampled_from(["Container", "Column", "ColumnSet", "ImageSet", "Unknown"])},
        optional={
            "items": st.lists(children, max_size=3),
            "columns": st.lists(children, max_size=3),
            "fallback": children | st.just("drop"),
        },
    ),
    max_leaves=12,
)
ADAPTIVE = st.fixed_dictionaries(
    {"type": st.just("AdaptiveCard"), "body": st.lists(ELEMENTS, max_size=4)},
    optional={"actions": JSON_VALUES},
)
MESSAGE_CARDS = st.fixed_dictionaries(
    {"@type": st.just("MessageCard")},
    optional={k: _SCALARS for k in ("title", "text", "summary")}
    | {"sections": st.lists(st.dictionaries(_KEYS, JSON_VALUES | _SCALARS, max_size=6), max_size=3)}
    | {"potentialAction": JSON_VALUES},
)
WRAPPED = st.builds(
    lambda content, kind: {"type": "message", "attachments": [{"contentType": kind, "content": content}]},
    ADAPTIVE | MESSAGE_CARDS | JSON_VALUES,
    st.sampled_from([teams.ADAPTIVE_TYPE, teams.CONNECTOR_TYPE, "application/vnd.microsoft.card.hero"]),
)
DISCORD_BODIES = st.fixed_dictionaries(
    {},
    optional={k: _SCALARS for k in ("content", "username", "tts", "avatar_url")}
    | {"embeds": st.lists(st.dictionaries(_KEYS, JSON_VALUES | _SCALARS, max_size=6), max_size=11)}
    | {"poll": JSON_VALUES, "components": JSON_VALUES},
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=JSON_VALUES | CARDS | ADAPTIVE | MESSAGE_CARDS | WRAPPED | DISCORD_BODIES)
def test_any_json_renders_or_is_refused_by_both_dialects(body: Any) -> None:
    for dialect in (teams, discord):
        try:
            rendered = dialect.render(body)
        except DialectError as error:
            assert error.status == 400 and error.message
        else:
            assert isinstance(rendered, Rendered)
            assert "\x00" not in rendered.text()
            rendered.text().encode("utf-8")  # storable
    teams.is_teams(body)
    discord.is_discord(body)
