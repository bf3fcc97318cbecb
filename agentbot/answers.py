"""Free-text answers: the customer's text -> the value a flow keeps, or None when it won't do.

This module does no I/O: no network, no database, no clock (a date is checked against the
calendar, never against today), no logging. Each input type of docs/flows.md §4 has one parser:

- `text`: any text with something in it, trimmed.
- `email`: `name@domain.tld`, trimmed; the domain is lowercased (the part before @ is kept as
  typed, since it may be case-sensitive).
- `phone`: E.164 (`+5511987654321`). Brazilian numbers need the DDD; `+55`/`55`/`0055` and a
  trunk `0` are optional; spaces, dots, dashes and parentheses are ignored. The missing 9th
  digit: an 8-digit number starting with 6, 7, 8 or 9 is a mobile written the pre-2016 way, so
  a 9 is put in front of it (`11 8765-4321` -> `+5511987654321`); one starting with 2 to 5 is a
  landline and stays 8 digits. A 9-digit number must start with 9. Other countries need `+`
  (or `00`) and 8 to 15 digits, and are kept as typed.
- `number`: an int when the value is whole, else a float. `,` or `.` may be the decimal mark:
  when both appear the last one is; a lone `,` is decimal (`1234,5`); a lone `.` followed by
  exactly three digits after 1 to 3 digits is a thousands mark (`1.500` is 1500, as Brazilians
  write it) and otherwise decimal (`1.5`, `1234.5`); repeated marks must group by three
  (`1.234.567`). A leading sign and a leading `R$` are allowed.
- `date`: `dd/mm/aaaa` (also with `-` or `.`, one-digit day and month allowed) or ISO
  `aaaa-mm-dd`; a real calendar date; stored ISO `YYYY-MM-DD`. Two-digit years are refused.
- `cpf`: 11 digits, dots and dash optional, valid check digits, not all one digit; stored as
  the 11 digits.
- `regex`: the whole trimmed text must match the flow's `pattern`; stored trimmed.
- `image`, `audio`, `file`, `location`: answered by a message that carries that kind of
  attachment (engine.py reads the attachments); text alone never answers them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Literal, Protocol


class InputType(StrEnum):
    TEXT = "text"
    EMAIL = "email"
    PHONE = "phone"
    NUMBER = "number"
    DATE = "date"
    CPF = "cpf"
    REGEX = "regex"
    IMAGE = "image"
    AUDIO = "audio"
    FILE = "file"
    LOCATION = "location"


# The attachment kinds (Chatwoot's file_type) that answer each media input type.
MEDIA_KINDS: Mapping[InputType, frozenset[str]] = {
    InputType.IMAGE: frozenset({"image"}),
    InputType.AUDIO: frozenset({"audio"}),
    InputType.FILE: frozenset({"image", "audio", "video", "file"}),
    InputType.LOCATION: frozenset({"location"}),
}
DEFAULT_ERRORS: Mapping[InputType, str] = {
    InputType.TEXT: "Não recebi sua resposta. Pode escrever, por favor?",
    InputType.EMAIL: "Esse e-mail não parece válido. Digite algo como nome@exemplo.com.",
    InputType.PHONE: "Esse telefone não parece válido. Digite com DDD, como (11) 98765-4321.",
    InputType.NUMBER: "Por favor, digite apenas um número.",
    InputType.DATE: "Essa data não parece válida. Use o formato dd/mm/aaaa.",
    InputType.CPF: "Esse CPF não é válido. Confira os 11 dígitos.",
    InputType.REGEX: "Não entendi sua resposta. Pode conferir e enviar de novo?",
    InputType.IMAGE: "Por favor, envie uma foto.",
    InputType.AUDIO: "Por favor, envie um áudio.",
    InputType.FILE: "Por favor, envie o arquivo.",
    InputType.LOCATION: "Por favor, envie sua localização.",
}

# Brazil's area codes (DDD), from ANATEL's numbering plan.
DDDS = frozenset(
    {
        *range(11, 20),
        21, 22, 24, 27, 28,
        *range(31, 36), 37, 38,
        *range(41, 47), 47, 48, 49,
        51, 53, 54, 55,
        *range(61, 70),
        71, 73, 74, 75, 77, 79,
        *range(81, 90),
        *range(91, 100),
    }
)  # fmt: skip

_EMAIL = re.compile(
    r"(?P<local>[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*)"
    r"@(?P<domain>(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})"
)
MAX_EMAIL = 254
_PHONE_CHARS = re.compile(r"\+?[\d\s().-]+", re.ASCII)
# ASCII digits only (`\d` alone takes "፩" and the like), and at most MAX_NUMBER characters: a
# longer number is no one's age or amount, and would not survive storage as JSON.
_NUMBER = re.compile(r"(?P<sign>[+-]?)\s*(?:R\$\s*)?(?P<body>\d[\d.,]*)", re.ASCII)
MAX_NUMBER = 30
_GROUPED = re.compile(r"\d{1,3}(?:X\d{3})*", re.ASCII)  # X stands for the thousands mark
_BR_DATE = re.compile(r"(\d{1,2})([/.-])(\d{1,2})\2(\d{4})", re.ASCII)
_ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})", re.ASCII)
_CPF = re.compile(r"\d{3}\.?\d{3}\.?\d{3}-?\d{2}", re.ASCII)


class Matcher(Protocol):
    """A compiled `pattern:` (RE2 at run time: linear in the text, whatever the pattern)."""

    def fullmatch(self, text: str) -> object | None: ...


def parse_answer(
    kind: InputType, text: str, pattern: Matcher | None = None
) -> str | int | float | None:
    """The value to keep for `text` as an answer of type `kind`; None when it is not valid."""
    text = text.strip()
    if not text:
        return None
    match kind:
        case InputType.TEXT:
            return text
        case InputType.EMAIL:
            return parse_email(text)
        case InputType.PHONE:
            return parse_phone(text)
        case InputType.NUMBER:
            return parse_number(text)
        case InputType.DATE:
            return parse_date(text)
        case InputType.CPF:
            return parse_cpf(text)
        case InputType.IMAGE | InputType.AUDIO | InputType.FILE | InputType.LOCATION:
            return None  # answered by an attachment only (engine.py)
    # only REGEX is left (mypy checks it); loader.py requires its pattern
    regex: Literal[InputType.REGEX] = kind
    assert pattern is not None, f"type {regex} needs a pattern"
    return text if pattern.fullmatch(text) else None


def parse_email(text: str) -> str | None:
    match = _EMAIL.fullmatch(text.strip())
    if match is None or len(match.group()) > MAX_EMAIL:
        return None
    return f"{match['local']}@{match['domain'].lower()}"


def parse_phone(text: str) -> str | None:
    text = text.strip()
    if not _PHONE_CHARS.fullmatch(text):
        return None
    digits = re.sub(r"\D", "", text)
    international = text.startswith("+")
    if not international and digits.startswith("00"):
        digits, international = digits[2:], True
    if international:
        if digits.startswith("55"):
            return _brazilian(digits[2:])
        ok = 8 <= len(digits) <= 15 and not digits.startswith("0")
        return f"+{digits}" if ok else None
    if len(digits) in (12, 13) and digits.startswith("55"):
        return _brazilian(digits[2:])
    if len(digits) in (11, 12) and digits.startswith("0"):
        return _brazilian(digits[1:])
    return _brazilian(digits)


def _brazilian(national: str) -> str | None:
    """`+55` + DDD + subscriber for a national number (DDD then 8 or 9 digits)."""
    if len(national) not in (10, 11) or int(national[:2]) not in DDDS:
        return None
    ddd, subscriber = national[:2], national[2:]
    if len(subscriber) == 9:
        return f"+55{ddd}{subscriber}" if subscriber[0] == "9" else None
    if subscriber[0] in "6789":
        return f"+55{ddd}9{subscriber}"  # a mobile without its 9th digit
    if subscriber[0] in "2345":
        return f"+55{ddd}{subscriber}"
    return None


def parse_number(text: str) -> int | float | None:
    match = _NUMBER.fullmatch(text.strip())
    if match is None:
        return None
    body = match["body"]
    if len(body) > MAX_NUMBER:
        return None
    commas, dots = body.count(","), body.count(".")
    if commas and dots:
        decimal_mark = "," if body.rfind(",") > body.rfind(".") else "."
    elif commas == 1:
        decimal_mark = ","
    elif dots == 1 and not re.fullmatch(r"[1-9]\d{0,2}\.\d{3}", body):
        decimal_mark = "."
    else:
        decimal_mark = ""  # no mark, or only thousands marks
    # The body starts with a digit, so `whole` is never empty; it holds digits and thousands
    # marks only, since the decimal mark is the last mark (or the only one) of the body.
    whole, _, fraction = body.rpartition(decimal_mark) if decimal_mark else (body, "", "")
    if decimal_mark and not fraction:
        return None
    thousands = {",": ".", ".": ","}.get(decimal_mark, "," if commas else ".")
    if thousands in whole and not _GROUPED.fullmatch(whole.replace(thousands, "X")):
        return None
    number = Decimal(f"{match['sign']}{whole.replace(thousands, '')}.{fraction or '0'}")
    return int(number) if number == number.to_integral_value() else float(number)


def parse_date(text: str) -> str | None:
    text = text.strip()
    if match := _BR_DATE.fullmatch(text):
        day, month, year = int(match[1]), int(match[3]), int(match[4])
    elif match := _ISO_DATE.fullmatch(text):
        year, month, day = int(match[1]), int(match[2]), int(match[3])
    else:
        return None
    try:
        return date(year, month, day).isoformat()
    except ValueError:  # 31/02, month 13, year 0
        return None


def parse_cpf(text: str) -> str | None:
    text = text.strip()
    if not _CPF.fullmatch(text):
        return None
    digits = re.sub(r"\D", "", text)
    if len(set(digits)) == 1:
        return None  # 000.000.000-00 and friends pass the check digits but are not CPFs
    numbers = [int(d) for d in digits]
    for size in (9, 10):
        weights = range(size + 1, 1, -1)
        total = sum(n * w for n, w in zip(numbers[:size], weights, strict=True))
        if numbers[size] != (total * 10) % 11 % 10:
            return None
    return digits
