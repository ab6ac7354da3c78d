"""``{% moica_login_box %}``: the rendered login box and its guarantees."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from typing import Any

import pytest
from django.template import Context, Template, TemplateSyntaxError
from django.test import RequestFactory
from django.utils import translation

from moica_auth.hipki import client_messages


@pytest.fixture(autouse=True)
def _urls(settings: Any) -> None:
    settings.ROOT_URLCONF = "tests.django_urls"


class _Inputs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def render(source: str, **context: Any) -> str:
    request = RequestFactory().get("/labor/?x=1")
    return Template("{% load moica_auth %}" + source).render(
        Context({"request": request, **context})
    )


def tags(html: str, name: str) -> list[dict[str, str | None]]:
    parser = _Inputs()
    parser.feed(html)
    return [attrs for tag, attrs in parser.tags if tag == name]


def test_pin_field_has_no_name_and_is_numeric() -> None:
    html = render("{% moica_login_box %}")
    (pin,) = [a for a in tags(html, "input") if "data-moica-pin" in a]
    assert "name" not in pin
    assert pin["type"] == "password"
    assert pin["autocomplete"] == "off"
    assert pin["inputmode"] == "numeric"
    assert pin["pattern"] == "[0-9]{6,8}"


def test_no_field_that_a_form_submits_could_carry_a_pin() -> None:
    html = render('{% moica_login_box fields="id_number,birth_date" %}')
    named = {a.get("name") for a in tags(html, "input") if a.get("name")}
    assert named <= {"csrfmiddlewaretoken"}


def test_renders_the_required_fields_in_order() -> None:
    html = render('{% moica_login_box fields="birth_date,id_number" next="/labor/" %}')
    fields = [a["data-moica-field"] for a in tags(html, "input") if "data-moica-field" in a]
    assert fields == ["id_number", "birth_date"]
    (form,) = tags(html, "form")
    assert form["data-fields"] == "id_number,birth_date"
    assert form["data-next"] == "/labor/"


def test_without_fields_only_the_pin_is_asked() -> None:
    html = render("{% moica_login_box %}")
    assert not [a for a in tags(html, "input") if "data-moica-field" in a]


def test_rejects_unknown_fields() -> None:
    with pytest.raises(TemplateSyntaxError):
        render('{% moica_login_box fields="id_number,password" %}')


def test_endpoints_component_and_next(settings: Any) -> None:
    settings.MOICA_AUTH_COMPONENT_URL = "http://127.0.0.1:61999/"
    html = render("{% moica_login_box next=request.get_full_path %}")
    (form,) = tags(html, "form")
    assert form["data-component-url"] == "http://127.0.0.1:61999"
    assert form["data-session-url"] == "/moica/session/"
    assert form["data-challenge-url"] == "/moica/challenge/"
    assert form["data-login-url"] == "/moica/login/"
    assert form["action"] == "/moica/login/"
    assert form["method"] == "post"
    assert form["data-next"] == "/labor/?x=1"
    assert "data-moica-login" in form


def test_default_component_url() -> None:
    (form,) = tags(render("{% moica_login_box %}"), "form")
    assert form["data-component-url"] == "http://localhost:61161"


@pytest.mark.parametrize(
    "url", ["ftp://localhost:61161", "http://localhost:61161/popupForm", "http://u:p@localhost"]
)
def test_rejects_a_component_url_that_cannot_be_an_origin(settings: Any, url: str) -> None:
    settings.MOICA_AUTH_COMPONENT_URL = url
    with pytest.raises(TemplateSyntaxError):
        render("{% moica_login_box %}")


def test_submit_is_disabled_until_the_script_binds() -> None:
    (button,) = tags(render("{% moica_login_box %}"), "button")
    assert "disabled" in button
    assert "data-moica-submit" in button


def test_status_area_is_live() -> None:
    (status,) = [a for a in tags(render("{% moica_login_box %}"), "p") if "data-moica-status" in a]
    assert status["aria-live"] == "polite"
    assert status["role"] == "status"


def test_embeds_the_message_catalogue_in_the_active_language() -> None:
    with translation.override("en"):
        html = render('{% moica_login_box box_id="box" %}')
        expected = client_messages()
    (script,) = [a for a in tags(html, "script") if a.get("id") == "box-messages"]
    assert script["type"] == "application/json"
    body = re.search(
        r'<script id="box-messages" type="application/json">(.*?)</script>', html, re.S
    )
    assert body is not None
    assert json.loads(body.group(1)) == expected
    assert json.loads(body.group(1))["last_error"]["80000002"]["tries_left"] == 2


def test_loads_the_client_without_inline_script() -> None:
    html = render('{% moica_login_box box_id="box" %}')
    scripts = tags(html, "script")
    modules = [a for a in scripts if a.get("type") == "module"]
    assert [a["src"] for a in modules] == ["/static/moica_auth/moica-auth-autobind.js"]
    # Only the JSON catalogue is inline (never executed), so script-src 'self' suffices.
    inline = re.findall(r"<script(?![^>]*\bsrc=)([^>]*)>", html)
    assert inline == [' id="box-messages" type="application/json"']


def test_box_ids_are_unique_per_render() -> None:
    html = render("{% moica_login_box %}{% moica_login_box %}")
    ids = [a["id"] for a in tags(html, "form")]
    assert len(ids) == len(set(ids)) == 2


def test_forwards_the_csrf_token() -> None:
    html = render("{% moica_login_box %}", csrf_token="tok-123")
    hidden = [a for a in tags(html, "input") if a.get("name") == "csrfmiddlewaretoken"]
    assert [a["value"] for a in hidden] == ["tok-123"]


def test_accepts_the_fields_list_of_a_view_context() -> None:
    html = render("{% moica_login_box fields=fields next=next %}", fields=["birth_date"], next="/x")
    (form,) = tags(html, "form")
    assert form["data-fields"] == "birth_date"
    assert form["data-next"] == "/x"


# --- hostile input ----------------------------------------------------------------------

XSS = "\"><script>alert(1)</script><x a='"


@pytest.mark.parametrize("wrapper", ["{}", "{{% autoescape off %}}{}{{% endautoescape %}}"])
def test_next_cannot_break_out_of_its_attribute(wrapper: str) -> None:
    # Even in a template that turned autoescaping off, the box escapes what it renders.
    html = render(wrapper.format("{% moica_login_box next=evil box_id=box %}"), evil=XSS)
    assert "<script>alert(1)" not in html
    (form,) = tags(html, "form")
    assert form["data-next"] == XSS
    assert [a.get("type") for a in tags(html, "script")] == ["application/json", "module"]


def test_box_id_cannot_inject_markup() -> None:
    html = render(
        "{% autoescape off %}{% moica_login_box box_id=evil %}{% endautoescape %}", evil=XSS
    )
    assert "<script>alert(1)" not in html
    (form,) = tags(html, "form")
    assert form["id"] == XSS


def test_the_catalogue_cannot_close_its_script_element(monkeypatch: Any) -> None:
    import moica_auth.templatetags.moica_auth as tag

    def hostile() -> dict[str, Any]:
        return {"client": {"unknown": "</script><script>alert(1)</script>"}}

    monkeypatch.setattr(tag, "client_messages", hostile)
    html = render('{% moica_login_box box_id="box" %}')
    assert "<script>alert(1)" not in html
    body = re.search(r'<script id="box-messages" type="application/json">(.*?)</script>', html)
    assert body is not None
    assert json.loads(body.group(1)) == hostile()


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "data:text/html,x",
        'http://localhost:61161"><script>alert(1)</script>',
        "http://local host:61161",
        "http://localhost:abc",
        "http://localhost:0",
        "http://localhost:70000",
        "http://localhost:61161?",
        "http://localhost:61161#",
        "http://localhost:61161 ",
        " http://localhost:61161",
        "http://localhost:61161\n",
        "http://[::1",
        "http://",
        "http://localhost:61161//",
        "http://loc<al>host:61161",
    ],
)
def test_component_url_must_be_a_plain_http_origin(settings: Any, url: str) -> None:
    settings.MOICA_AUTH_COMPONENT_URL = url
    with pytest.raises(TemplateSyntaxError):
        render("{% moica_login_box %}")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://localhost:61161", "http://localhost:61161"),
        ("http://127.0.0.1:61161/", "http://127.0.0.1:61161"),
        ("https://hipki.example:8443", "https://hipki.example:8443"),
        ("HTTP://LocalHost:61161", "http://localhost:61161"),
        ("http://[::1]:61161", "http://[::1]:61161"),
    ],
)
def test_component_url_is_normalised_to_its_origin(settings: Any, url: str, expected: str) -> None:
    settings.MOICA_AUTH_COMPONENT_URL = url
    (form,) = tags(render("{% moica_login_box %}"), "form")
    assert form["data-component-url"] == expected


def test_without_the_script_the_form_posts_no_pin_and_no_personal_field() -> None:
    # JavaScript off: the button is disabled (no implicit submission either), and even a
    # forced native submission would carry only the CSRF token: no input but that one
    # has a name, and nothing in the form names the PIN.
    html = render('{% moica_login_box fields="id_number,birth_date" %}', csrf_token="tok-123")
    (form,) = tags(html, "form")
    assert form["method"] == "post"  # never GET: nothing ends up in a URL
    named = [a for a in tags(html, "input") if a.get("name")]
    assert [(a["name"], a.get("type")) for a in named] == [("csrfmiddlewaretoken", "hidden")]
    assert not tags(html, "select") and not tags(html, "textarea")
    for (button,) in [tags(html, "button")]:
        assert "disabled" in button
        assert "name" not in button and "formaction" not in button
