"""E.164 normalisation: the North American shortcut gives exactly what the library gives."""

import random

import pytest

from sessions_app.phones import InvalidPhoneNumber, _parsed_e164, normalize_phone


def test_every_north_american_number_takes_the_shortcut_to_the_librarys_answer():
    rng = random.Random(2026)
    numbers = ["+10000000000", "+11111111111", "+19999999999"]
    numbers += ["+1" + "".join(rng.choice("0123456789") for _ in range(10)) for _ in range(3000)]
    for number in numbers:
        assert normalize_phone(number) == _parsed_e164(number) == number


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+15551234567", "+15551234567"),
        ("15551234567", "+15551234567"),
        (" whatsapp:+15551234567 ", "+15551234567"),
        ("+1 (555) 123-4567", "+15551234567"),
        ("+447700900123", "+447700900123"),
        ("whatsapp:+4915112345678", "+4915112345678"),
        ("+1" + "\u0661" * 10, "+11111111111"),  # Arabic-Indic digits: the library's path, not the shortcut's
    ],
)
def test_it_normalises_to_e164(raw, expected):
    assert normalize_phone(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "not a number",
        "+1555",
        "+155512345678901234",
    ],
)
def test_it_refuses_what_is_not_a_phone_number(raw):
    with pytest.raises(InvalidPhoneNumber):
        normalize_phone(raw)
