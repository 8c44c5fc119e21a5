"""Slack and Mattermost webhook bodies rendered to Markdown: one test per real payload, then the edges.

The fixtures in tests/fixtures/slack/ are the examples of Slack's and Mattermost's documentation;
tests/fixtures/README.md names the page each one comes from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.strategies import vocabulary
from webhooks import dialects, slack
from webhooks import markdown as md
from webhooks.message import DialectError, Rendered

FIXTURES = Path(__file__).parent / "fixtures" / "slack"
ALL_FIXTURES = sorted(FIXTURES.glob("*.json"))


def load(name: str) -> Any:
    """A fixture body."""
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def render(name: str) -> Rendered:
    """The message a fixture body renders to."""
    return slack.render(load(name))


def refusal(body: Any) -> DialectError:
    """The error a body is refused with."""
    with pytest.raises(DialectError) as caught:
        slack.render(body)
    return caught.value


# --- Slack: one test per fixture -----------------------------------------------------------------


def test_incoming_webhook_guide_review_with_blocks() -> None:
    rendered = render("incoming_webhook_review.json")
    # The blocks are shown; `text` is only Slack's notification line. The stray spaces are the sender's.
    assert rendered.content == (
        "Danny Torrence left the following review for your property:\n"
        "\n"
        "[Overlook Hotel](https://example.com) \n"
        " :star: \n"
        " Doors had too many axe holes, guest in room 237 was far too rowdy, whole place felt stuck in the "
        "1920s.\n"
        "[Haunted hotel image](https://is5-ssl.mzstatic.com/image/thumb/Purple3/v4/d3/72/5c/"
        "d3725c8f-c642-5d69-1904-aa36e4297885/source/256x256bb.jpg)\n"
        "\n"
        "**Average Rating**\n"
        "1.0"
    )
    assert (rendered.username, rendered.channel, rendered.dropped) == (None, None, ())


def test_legacy_attachment_with_every_field() -> None:
    rendered = render("legacy_attachment.json")
    # "author_name" holds an underscore, so it is not put in italics (it could end them early).
    assert rendered.content == (
        "Optional pre-text that appears above the attachment block\n"
        "[author_name](http://flickr.com/bobby/)\n"
        "**[title](https://docs.slack.dev/)**\n"
        "Optional `text` that appears within the attachment\n"
        "- **A field's title**: This field's value\n"
        "- **A short field's title**: A short field's value\n"
        "- **A second short field's title**: A second short field's value\n"
        "[thumbnail](http://placekitten.com/g/200/200)\n"
        "_footer · 1973-11-29 21:33 UTC_"
    )
    assert rendered.channel == "ABCDEBF1"
    assert rendered.dropped == ()


def test_blocks_array_from_the_formatting_guide() -> None:
    rendered = render("blocks_paid_time_off.json")
    # <example.com|Fred Enriquez> has no scheme: not a link anyone can follow, so the name alone.
    assert rendered.content == (
        "**New request**\n"
        "\n"
        "**Type:**\n"
        "Paid Time Off\n"
        "**Created by:**\n"
        "Fred Enriquez\n"
        "\n"
        "**When:**\n"
        "Aug 10 - Aug 13\n"
        "\n"
        "[View request](https://example.com)"
    )
    assert rendered.channel == "C123ABC456"


def test_section_with_text_and_fields() -> None:
    # Block Kit is Slack's alone, so its *bold* is bold; plain_text is shown as written.
    assert render("section_text_fields.json") == Rendered(
        "A message **with some bold text** and _some italicized text_.\nHigh\nSilly"
    )


def test_section_with_a_datepicker_names_the_picker() -> None:
    assert render("section_datepicker.json") == Rendered(
        "**Haley** has requested you set a deadline for finding a house", dropped=("datepicker",)
    )


def test_context_block_leaves_its_icon_out() -> None:
    # Italics cannot hold the bold inside, so the line stays as written.
    assert render("context.json") == Rendered("Location: **Dogpatch**")


def test_header_block() -> None:
    assert render("header.json") == Rendered("**A Heartfelt Header**")


def test_image_block_is_a_link_named_by_its_title() -> None:
    assert render("image.json") == Rendered(
        "[Please enjoy this photo of a kitten](http://placekitten.com/500/500)"
    )


def test_rich_text_styles() -> None:
    assert render("rich_text_styles.json") == Rendered(
        "Hello there, I am a basic rich text block!\n"
        "\n"
        "Hello there, **I am a bold rich text block!**\n"
        "\n"
        "Hello there, _I am an italic rich text block!_\n"
        "\n"
        "Hello there, ~~I am a strikethrough rich text block!~~"
    )


def test_rich_text_nested_list() -> None:
    assert render("rich_text_nested_list.json") == Rendered(
        "Breakfast foods I enjoy:\n"
        "\n"
        "- Hashbrowns\n"
        "- Eggs\n"
        "    - Scrambled\n"
        "    - Over easy\n"
        "- Pancakes, extra syrup"
    )


def test_rich_text_quote_does_not_swallow_the_reply() -> None:
    # A blank line ends the quote; without it Markdown would carry the reply into the quote.
    assert render("rich_text_quote.json") == Rendered(
        "> What we need is good examples in our documentation.\n\nYes - I completely agree, Luke!"
    )


def test_rich_text_preformatted() -> None:
    assert render("rich_text_preformatted.json") == Rendered(
        '```\n{\n  "object": {\n    "description": "this is an example of a json object"\n  }\n}\n```'
    )


def test_actions_block_alone_is_refused_and_named() -> None:
    error = refusal(load("actions.json"))
    assert (error.status, error.code) == (400, "no_text")
    assert "it holds only: actions block" in error.message


# --- Mattermost: one test per fixture ------------------------------------------------------------


def test_mattermost_hello() -> None:
    assert render("mattermost_hello.json") == Rendered("Hello, this is some text\nThis is more text. :tada:")


def test_mattermost_test_results_table_with_username_and_channel() -> None:
    rendered = render("mattermost_test_results.json")
    assert rendered.content == (
        "#### Test results for July 27th, 2017\n"
        "@All please review failed tests.\n"
        "\n"
        "| Component  | Tests Run   | Tests Failed                                   |\n"
        "|:-----------|:-----------:|:-----------------------------------------------|\n"
        "| Server     | 948         | :white_check_mark: 0                           |\n"
        "| Web Client | 123         | :warning: 2 [(see details)](https://linktologs) |\n"
        "| iOS Client | 78          | :warning: 3 [(see details)](https://linktologs) |"
    )
    assert (rendered.username, rendered.channel) == ("test-automation", "town-square")


def test_mattermost_props_card_is_not_shown() -> None:
    # Mattermost shows `card` only in a side panel, on request; the message is the text.
    assert render("mattermost_props_card.json") == Rendered(
        "#### We won a new deal!", username="Winning-bot", channel="town-square"
    )


def test_mattermost_attachment() -> None:
    assert render("mattermost_attachment.json").content == (
        "This is optional pretext that shows above the attachment.\n"
        "_[Mattermost](https://mattermost.org/)_\n"
        "**[Example Attachment](https://developers.mattermost.com/integrate/reference/message-attachments/)**\n"
        "This is the text of the attachment. It should appear just above an image of the Mattermost logo. "
        "The left border of the attachment should be colored orange, and below the image it should include "
        "additional fields that are formatted in columns. At the top of the attachment, there should be an "
        "author name followed by a bolded title. Both the author name and the title should be hyperlinks.\n"
        "- **Long Field**: Testing with a very long piece of text that will take up the whole width of the "
        "table. And then some more text to make it extra long.\n"
        "- **Column One**: Testing\n"
        "- **Column Two**: Testing\n"
        "- **Another Field**: Testing\n"
        "[image](https://mattermost.com/wp-content/uploads/2022/02/icon_WS.png)"
    )


def test_mattermost_translates_slack_links() -> None:
    assert render("mattermost_slack_link.json") == Rendered(
        "Click [here](https://mattermost.com/) for a link."
    )


def test_mattermost_translates_slack_channel_mentions() -> None:
    assert render("mattermost_slack_channel_mention.json") == Rendered("@All this is a notification.")


@pytest.mark.parametrize("path", ALL_FIXTURES, ids=lambda p: p.name)
def test_every_fixture_is_detected_as_slack(path: Path) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert slack.looks_like(data)
    assert dialects.detect(data) == "slack"


def test_every_fixture_has_a_test() -> None:
    source = Path(__file__).read_text(encoding="utf-8")
    assert [p.name for p in ALL_FIXTURES if f'"{p.name}"' not in source] == []


# --- mrkdwn --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "markdown"),
    [
        # links (the examples of Slack's "Formatting message text")
        (
            "This message contains a URL: <https://docs.slack.dev/>",
            "This message contains a URL: <https://docs.slack.dev/>",
        ),
        (
            "<https://docs.slack.dev/|This message is a link>",
            "[This message is a link](https://docs.slack.dev/)",
        ),
        (
            "<mailto:perihelion@univmiharanewtideland.com|Email Perihelion>",
            "[Email Perihelion](mailto:perihelion@univmiharanewtideland.com)",
        ),
        ("<https://example.com/a b (c)|x>", "[x](https://example.com/a%20b%20%28c%29)"),
        ("<https://x.example|[1] of 2>", "[\\[1\\] of 2](https://x.example)"),
        ("<https://x.example/?a=1&amp;b=2|a &amp;lt; b>", "[a &lt; b](https://x.example/?a=1&b=2)"),
        ("<example.com|Fred Enriquez>", "Fred Enriquez"),
        ("<javascript:alert(1)|click>", "click"),
        ("<javascript:alert(1)>", "javascript:alert(1)"),
        ("<not a link>", "<not a link>"),
        ("a <> b", "a <> b"),
        # broadcasts and mentions
        ("<!channel> deploy", "@All deploy"),
        ("Hey <!here>, there's a new task in your queue.", "Hey @Present, there's a new task in your queue."),
        ("<!everyone>", "@All"),
        ("<!all> <!group>", "@All @All"),
        ("<!channel|channel>", "@All"),
        ("<@U123|bob> and <@U012AB3CD>", "@bob and @U012AB3CD"),
        ("Why not join <#C1|general> or <#C123ABC456>?", "Why not join #general or #C123ABC456?"),
        ("Hey <!subteam^SAZ94GDB8>, there's a new task.", "Hey @SAZ94GDB8, there's a new task."),
        ("<!subteam^SAZ94GDB8|@ops>", "@ops"),
        ("@channel and @here, again", "@All and @Present, again"),
        ("write to ops@here.example or @channels", "write to ops@here.example or @channels"),
        # dates
        (
            "<!date^1392734382^Posted {date_num} {time_secs}|Posted 2014-02-18 6:39:42 AM PST>",
            "Posted 2014-02-18 6:39:42 AM PST",
        ),
        (
            "<!date^1392734382^{date_short}^https://example.com/|Feb 18, 2014 PST>",
            "[Feb 18, 2014 PST](https://example.com/)",
        ),
        ("<!date^1392734382^{date_num}>", "2014-02-18 14:39 UTC"),
        ("<!date^99999999999999999999^{date}>", ""),
        # escapes, unescaped once
        ("a &lt;b&gt; &amp; c", "a <b> & c"),
        ("&amp;lt;", "&lt;"),
        # the automatic-parsing example, parsed
        (
            "<http://example.com|example link> <http://example.com> <#C0838UC2D|general> <!here> :smile:",
            "[example link](http://example.com) <http://example.com> #general @Present :smile:",
        ),
        # code is left as written, and Slack's one-line ```blocks``` get fences of their own
        ("`<!here>` is how", "`<!here>` is how"),
        (
            "```This is a code block\nAnd it's multi-line```",
            "```\nThis is a code block\nAnd it's multi-line\n```",
        ),
        ("see ```x &amp; y``` here", "see \n```\nx & y\n```\n here"),
        ("```python\nprint(1)\n```", "```python\nprint(1)\n```"),
        # emphasis is Mattermost's Markdown outside Block Kit
        ("*bold* ~strike~", "*bold* ~strike~"),
        ("", ""),
    ],
)
def test_mrkdwn(text: str, markdown: str) -> None:
    assert slack.mrkdwn(text) == markdown


@pytest.mark.parametrize(
    ("text", "markdown"),
    [
        ("*bold* and ~strike~ and _italic_", "**bold** and ~~strike~~ and _italic_"),
        ("*Average Rating*\n1.0", "**Average Rating**\n1.0"),
        ("2 * 3 * 4", "2 * 3 * 4"),
        ("a*b*c", "a*b*c"),
        ("**already bold**", "**already bold**"),
        ("`*code*` stays", "`*code*` stays"),
        ("*see <https://x.example|here>*", "**see [here](https://x.example)**"),
        ("*not\nacross lines*", "*not\nacross lines*"),
    ],
)
def test_mrkdwn_with_slack_emphasis(text: str, markdown: str) -> None:
    assert slack.mrkdwn(text, emphasis=True) == markdown


# --- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"text": ""},
        {"text": "   \n"},
        {"text": None},
        {"username": "ci"},
        {"attachments": []},
        {"blocks": []},
    ],
)
def test_nothing_to_post_is_no_text(body: dict[str, Any]) -> None:
    error = refusal(body)
    assert (error.status, error.code) == (400, "no_text")


@pytest.mark.parametrize("body", [[], "text", None, 3, [{"text": "x"}]])
def test_a_body_that_is_not_an_object_is_invalid_payload(body: Any) -> None:
    assert (refusal(body).status, refusal(body).code) == (400, "invalid_payload")


@pytest.mark.parametrize("text", [5, ["a"], {"a": 1}, True])
def test_text_that_is_not_a_string_is_invalid_payload(text: Any) -> None:
    error = refusal({"text": text})
    assert (error.status, error.code, error.message) == (400, "invalid_payload", "`text` must be a string")


def test_more_than_100_attachments_are_refused() -> None:
    one = {"fallback": "f", "text": "t"}
    assert slack.render({"attachments": [one] * 100}).content.count("t") == 100
    error = refusal({"attachments": [one] * 101})
    assert (error.status, error.code) == (400, "too_many_attachments")


def test_blocks_and_attachments_must_be_arrays() -> None:
    assert refusal({"text": "x", "blocks": {}}).code == "invalid_blocks"
    assert refusal({"text": "x", "attachments": "x"}).code == "invalid_attachments"


# --- what cannot be shown is named ---------------------------------------------------------------


def test_buttons_actions_and_inputs_are_named_as_dropped() -> None:
    body = {
        "text": "fallback",
        "blocks": [
            {
                "type": "section",
                "text": {"type": "plain_text", "text": "Deploy?"},
                "accessory": {"type": "button"},
            },
            {
                "type": "actions",
                "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Yes"}}],
            },
            {
                "type": "input",
                "label": {"type": "plain_text", "text": "Why"},
                "element": {"type": "plain_text_input"},
            },
        ],
        "attachments": [{"text": "see also", "actions": [{"type": "button", "text": "Ack", "name": "ack"}]}],
    }
    rendered = slack.render(body)
    assert rendered == Rendered(
        "Deploy?\n\nsee also", dropped=("button", "actions block", "input block", "buttons")
    )
    assert rendered.text() == (
        "Deploy?\n\nsee also\n\n_(not shown: button, actions block, input block, buttons)_"
    )


def test_buttons_that_open_a_web_page_become_links() -> None:
    link = {"type": "button", "text": {"type": "plain_text", "text": "Open"}, "url": "https://ci.example/1"}
    body = {
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": "Build *failed*"}, "accessory": link},
            {"type": "actions", "elements": [link, {**link, "url": "javascript:alert(1)"}]},
        ],
        "attachments": [
            {
                "fallback": "f",
                "actions": [{"type": "button", "text": "Logs", "url": "https://ci.example/1/log"}],
            }
        ],
    }
    assert slack.render(body) == Rendered(
        "Build **failed**\n[Open](https://ci.example/1)\n\n[Open](https://ci.example/1)\n\n"
        "[Logs](https://ci.example/1/log)",
        dropped=("actions block",),
    )


def test_an_attachment_with_only_a_fallback_shows_the_fallback() -> None:
    assert slack.render({"attachments": [{"fallback": "Build <https://ci.example|#42> failed"}]}) == Rendered(
        "Build [#42](https://ci.example) failed"
    )


def test_attachment_blocks_and_named_colors() -> None:
    body = {
        "attachments": [
            {
                "color": "danger",
                "title": "Deploy failed",
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*prod* is down"}}],
            }
        ]
    }
    assert slack.render(body).content == "🔴 **Deploy failed**\n**prod** is down"


def test_mattermost_takes_attachments_in_props() -> None:
    body = {
        "props": {
            "attachments": [
                {"pretext": "This is the attachment pretext.", "text": "This is the attachment text."}
            ]
        }
    }
    assert slack.looks_like(body)
    assert slack.render(body) == Rendered("This is the attachment pretext.\nThis is the attachment text.")


def test_dividers_only_stand_between_blocks() -> None:
    section = {"type": "section", "text": {"type": "plain_text", "text": "a"}}
    divider = {"type": "divider"}
    body = {"blocks": [divider, section, divider, divider, section, divider]}
    assert slack.render(body).content == "a\n\n---\n\na"
    assert refusal({"blocks": [divider]}).code == "no_text"
    assert slack.render({"text": "shown instead", "blocks": [divider]}).content == "shown instead"


def test_rich_text_elements_of_every_kind() -> None:
    block = {
        "type": "rich_text",
        "elements": [
            {
                "type": "rich_text_section",
                "elements": [
                    {"type": "broadcast", "range": "here"},
                    {"type": "text", "text": " "},
                    {"type": "user", "user_id": "U123"},
                    {"type": "text", "text": " see ", "style": {"bold": True, "italic": True}},
                    {"type": "link", "url": "https://x.example", "text": "this"},
                    {"type": "text", "text": " in "},
                    {"type": "channel", "channel_id": "C123ABC456"},
                    {"type": "text", "text": " run `a`", "style": {"code": True}},
                    {"type": "emoji", "name": "wave", "unicode": "1f44b"},
                    {"type": "emoji", "name": "party-parrot"},
                    {"type": "date", "timestamp": 1720710212, "format": "{date_num}", "fallback": "timey"},
                    {"type": "text", "text": " "},
                    {"type": "date", "timestamp": 1720710212, "format": "{date_num}"},
                    {"type": "link", "url": "javascript:alert(1)", "text": "bad"},
                ],
            },
            {
                "type": "rich_text_list",
                "style": "ordered",
                "offset": 2,
                "elements": [
                    {"type": "rich_text_section", "elements": [{"type": "text", "text": "third"}]},
                ],
            },
        ],
    }
    assert slack.render({"blocks": [block]}).content == (
        "@Present @U123 **_see_** [this](https://x.example) in #C123ABC456 `` run `a` ``"
        "👋:party-parrot:timey 2024-07-11 15:03 UTCbad\n"
        "\n"
        "3. third"
    )


def test_unsafe_links_in_attachments_and_blocks_are_not_links() -> None:
    body = {
        "attachments": [
            {
                "title": "t",
                "title_link": "javascript:alert(1)",
                "author_name": "a",
                "author_link": "data:x",
                "image_url": "file:///etc/passwd",
            },
        ],
        "blocks": [{"type": "image", "image_url": "javascript:alert(1)", "alt_text": "x"}],
        "text": "<javascript:alert(1)|click>",
    }
    assert slack.render(body).content == "click\n\n_a_\n**t**"


def test_attachment_timestamps_that_are_not_times_are_left_out() -> None:
    for ts in ("99999999999999999999", "²", "1e5", -1e300, float("nan"), True, "soon", [1]):
        assert slack.render({"attachments": [{"footer": "f", "ts": ts}]}).content == "_f_"
    assert slack.render({"attachments": [{"ts": "1392734382.5"}]}).content == "_2014-02-18 14:39 UTC_"


def test_field_values_may_be_numbers_and_names_lose_their_colon() -> None:
    body = {
        "attachments": [
            {"fields": [{"title": "Count:", "value": 3}, {"title": "Only a name"}, {"value": "only a value"}]}
        ]
    }
    assert slack.render(body).content == "- **Count**: 3\n- Only a name\n- only a value"


# --- who and where -------------------------------------------------------------------------------


def test_username_and_channel_are_read() -> None:
    rendered = slack.render(
        {"text": "hi", "username": "  ci-bot ", "channel": " #general ", "icon_emoji": ":robot:"}
    )
    assert (rendered.username, rendered.channel) == ("ci-bot", "#general")
    assert slack.render({"text": "hi", "channel": "@jim"}).channel == "@jim"
    assert slack.render({"text": "hi", "username": "x" * 100}).username == "x" * slack.MAX_USERNAME


@pytest.mark.parametrize("value", [None, "", "   ", 5, ["ci"], {"name": "ci"}])
def test_username_and_channel_that_are_not_names_are_ignored(value: Any) -> None:
    rendered = slack.render({"text": "hi", "username": value, "channel": value})
    assert (rendered.username, rendered.channel) == (None, None)


def test_text_that_cannot_be_stored_is_cleaned() -> None:
    rendered = slack.render({"text": "a\x00b\ud800c", "username": "x\x00y"})
    assert (rendered.content, rendered.username) == ("ab?c", "xy")


# --- the shared inline Markdown ------------------------------------------------------------------


def test_shared_markdown_helpers() -> None:
    assert md.url(" https://a.example/x y ") == "https://a.example/x%20y"
    assert [md.url(u) for u in ("javascript:x", "data:x", "//x", "ftp://x", 5, None)] == [None] * 6
    assert md.link("a\n[b]", "HTTPS://x") == "[a \\[b\\]](HTTPS://x)"
    assert md.link("label", "javascript:x") == "label"
    assert md.link("", "https://x") == "[https://x](https://x)"
    assert (md.bold(" a "), md.bold("a\nb"), md.bold("**a**"), md.bold("")) == (
        " **a** ",
        "a\nb",
        "**a**",
        "",
    )
    assert (md.italic("a"), md.italic("a_b"), md.italic("*a*")) == ("_a_", "a_b", "*a*")
    assert (md.strike("a "), md.strike("~~a~~")) == ("~~a~~ ", "~~a~~")
    assert (md.code("a"), md.code("a`b"), md.code("`a")) == ("`a`", "``a`b``", "`` `a ``")
    assert (md.fact("Board:", "x"), md.fact("", "x"), md.fact("n", " "), md.fact("", "")) == (
        "- **Board**: x",
        "- x",
        "- n",
        "",
    )
    assert md.clean("a\x00b\udfffc") == "ab?c"


# --- robustness ----------------------------------------------------------------------------------

_KEYS, _SCALARS, JSON_VALUES = vocabulary(
    [
        *("text", "username", "channel", "icon_url", "icon_emoji", "attachments", "blocks", "props", "type"),
        *("fallback", "color", "pretext", "author_name", "author_link", "title", "title_link", "fields"),
        *("value", "short", "image_url", "thumb_url", "footer", "ts", "actions", "url", "name", "elements"),
        *("accessory", "alt_text", "style", "indent", "offset", "unicode", "range", "user_id", "timestamp"),
    ],
    [
        *(
            "section",
            "header",
            "context",
            "divider",
            "image",
            "rich_text",
            "actions",
            "input",
            "markdown",
        ),
        *("rich_text_section", "rich_text_list", "rich_text_quote", "rich_text_preformatted", "ordered"),
        *(
            "text",
            "link",
            "user",
            "channel",
            "broadcast",
            "emoji",
            "date",
            "mrkdwn",
            "plain_text",
            "button",
        ),
        *(
            "good",
            "danger",
            "https://example.com",
            "javascript:alert(1)",
            "1392734382",
            "1f44b",
            "\x00\ud800",
        ),
        *("<!channel>", "<https://x|y>", "<!date^99999999999999999^x>", "```a```", "*b*", "&amp;lt;"),
    ],
)
_TEXT_OBJECTS = st.fixed_dictionaries(
    {"type": st.sampled_from(["mrkdwn", "plain_text"]), "text": st.text() | _SCALARS}
)
_RUNS = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "link", "user", "channel", "broadcast", "emoji", "date", "color"])},
    optional={k: _SCALARS for k in ("text", "url", "user_id", "range", "unicode", "timestamp", "fallback")}
    | {"style": st.dictionaries(st.sampled_from(["bold", "italic", "strike", "code"]), _SCALARS)},
)
_RICH = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            ["rich_text_section", "rich_text_list", "rich_text_quote", "rich_text_preformatted"]
        )
    },
    optional={
        "elements": st.lists(
            _RUNS | st.fixed_dictionaries({"elements": st.lists(_RUNS, max_size=3)}), max_size=4
        ),
        "indent": _SCALARS,
        "offset": _SCALARS,
        "style": st.sampled_from(["bullet", "ordered"]) | _SCALARS,
    },
)
BLOCKS = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            ["section", "header", "context", "divider", "image", "rich_text", "actions", "x"]
        )
    },
    optional={
        "text": _TEXT_OBJECTS | JSON_VALUES,
        "fields": st.lists(_TEXT_OBJECTS, max_size=3) | JSON_VALUES,
        "elements": st.lists(_RICH | _TEXT_OBJECTS, max_size=3) | JSON_VALUES,
        "accessory": JSON_VALUES,
        "image_url": _SCALARS,
        "title": _TEXT_OBJECTS | _SCALARS,
    },
)
ATTACHMENTS = st.dictionaries(_KEYS, JSON_VALUES | _SCALARS, max_size=8)
SLACK_BODIES = st.fixed_dictionaries(
    {},
    optional={
        "text": st.text() | _SCALARS,
        "username": _SCALARS,
        "channel": _SCALARS,
        "blocks": st.lists(BLOCKS, max_size=4) | JSON_VALUES,
        "attachments": st.lists(ATTACHMENTS, max_size=3) | JSON_VALUES,
        "props": st.fixed_dictionaries({}, optional={"attachments": st.lists(ATTACHMENTS, max_size=3)}),
    },
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=JSON_VALUES | SLACK_BODIES)
def test_any_json_renders_or_is_refused(body: Any) -> None:
    try:
        rendered = slack.render(body)
    except DialectError as error:
        assert error.status == 400 and error.code and error.message
        return
    assert isinstance(rendered, Rendered)
    assert rendered.content.strip() and "\x00" not in rendered.content
    rendered.text().encode("utf-8")  # storable: no unpaired surrogate


@settings(max_examples=300, deadline=None)
@given(text=st.text() | st.sampled_from(["<!date^1^x|", "<https://x|", "``` ```", "`a` ```b"]))
def test_mrkdwn_takes_any_text(text: str) -> None:
    assert isinstance(slack.mrkdwn(text), str)
    assert isinstance(slack.mrkdwn(text, emphasis=True), str)
