"""Deterministic, realistic CustomerGauge v7 records from a seed.

Realistic means messy in the ways real tenants are (reference §5.2 shape plus the quirks a client
must survive): mixed-case and missing e-mails, null comments, emoji and non-Latin text, very long
verbatims, accented names, null or missing segment properties, scores skewed towards promoters.
Deterministic means the same ``SeedSpec`` (with an explicit ``end``) always yields the same records,
so a failing test can be replayed. Each concern draws from its own ``random.Random`` stream so that
consuming one stream (e.g. non-responses) never shifts another.

Everything is computed on integer UTC epoch seconds and formatted as ``YYYY-MM-DD HH:MM:SS``
without a timezone, like the API. Generation is built for 1,000,000 records: records are produced
one at a time (the store renders and drops them), only a few integer arrays are planned up front.
"""

from __future__ import annotations

import calendar
import random
from array import array
from bisect import bisect
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import cache
from itertools import accumulate
from typing import Any, TypeVar

DAY = 86400
CGID_BASE = 185000  # golden record territory (reference §5.2)


@dataclass(frozen=True)
class SeedSpec:
    """What to seed: ``responses`` valid responses over ``days`` days ending on ``end`` (default: today
    UTC), across ``accounts`` accounts, plus ``invalid`` invalid responses spread through the feed and
    ``non_responses`` unanswered invitations on their own endpoint. ``people`` (optional) makes the
    respondents come from a fixed pool of that many persons, each tied to one account, so e-mails
    repeat across responses as in a real programme; unset, nearly every response has its own."""

    responses: int = 1000
    days: int = 30
    accounts: int = 20
    invalid: int = 0
    non_responses: int = 0
    seed: int = 7
    end: date | None = None
    people: int | None = None

    def __post_init__(self) -> None:
        if self.responses < 0 or self.invalid < 0 or self.non_responses < 0:
            raise ValueError("responses, invalid and non_responses must be >= 0")
        if self.days < 1 or self.accounts < 1:
            raise ValueError("days and accounts must be >= 1")
        if self.people is not None and not self.accounts <= self.people <= self.accounts * len(_FIRST_NAMES) * len(_LAST_NAMES):
            raise ValueError("people must be between accounts and accounts x first names x last names")
        if self.end is not None and self.end > _utc_now().date():
            raise ValueError(f"end {self.end} is in the future: survey data cannot be")


T = TypeVar("T")
Weighted = tuple[list[T], list[float]]


def _weighted(values: list[T], weights: list[float]) -> Weighted[T]:
    """Values with cumulative weights, for ``_pick``."""
    return values, list(accumulate(weights))


def _pick(rng: random.Random, weighted: Weighted[T]) -> T:
    """A weighted draw; ~8x cheaper than ``rng.choices``, which matters at 1M records x 7 draws."""
    values, cumulative = weighted
    return values[bisect(cumulative, rng.random() * cumulative[-1])]


# -- vocabulary --------------------------------------------------------------------------------------

_COMPANY_PREFIXES = [
    ("ACME", "acme"), ("Northwind", "northwind"), ("Globex", "globex"), ("Initech", "initech"),
    ("Müller & Söhne", "mueller-soehne"), ("Café Lumière", "cafe-lumiere"), ("Vandelay", "vandelay"),
    ("Blue Harbor", "blueharbor"), ("Nordisk Ølbryggeri", "nordisk-ol"), ("Tyrell", "tyrell"),
    ("Sakura Trading", "sakura-trading"), ("Oceanic", "oceanic"), ("Aperture", "aperture"),
    ("São Paulo Têxtil", "sp-textil"), ("Hooli", "hooli"), ("Umbrella", "umbrella"),
    ("Kowalski i Syn", "kowalski-syn"), ("Wonka", "wonka"), ("Stark", "stark"), ("Gringotts", "gringotts"),
]
_COMPANY_SUFFIXES = [
    ("Industries", "industries"), ("Logistics", "logistics"), ("Health", "health"), ("Systems", "systems"),
    ("Retail", "retail"), ("Foods", "foods"), ("Bank", "bank"), ("Energy", "energy"), ("Media", "media"),
    ("Labs", "labs"),
]
# ISO 3166 alpha-2 -> (ISO 639-1 language, phone country code)
_COUNTRIES = {
    "NL": ("nl", "31"), "DE": ("de", "49"), "FR": ("fr", "33"), "GB": ("en", "44"), "US": ("en", "1"),
    "JP": ("ja", "81"), "BR": ("pt", "55"), "ES": ("es", "34"), "SE": ("sv", "46"), "PL": ("pl", "48"),
    "AE": ("ar", "971"), "CN": ("zh", "86"), "BG": ("bg", "359"),
}
_COUNTRY_CODES = list(_COUNTRIES)
_SEGMENTS = _weighted(["Enterprise", "Mid-Market", "SMB"], [20, 35, 45])
_PRODUCTS = ["Analytics Cloud", "Payments API", "Field Service", "Commerce Suite", "Data Platform"]
_TOUCHPOINTS = _weighted(
    [("Onboarding", "ONB"), ("Support", "SUP"), ("Renewal", "REN"), ("Relationship", "REL"),
     ("Implementation", "IMP"), ("Training", "TRN")],
    [20, 30, 15, 20, 10, 5],
)
_CHANNELS = _weighted(["email", "web", "in-app", "sms"], [60, 20, 12, 8])
_FIRST_NAMES = [
    ("Lee", "lee"), ("José", "jose"), ("Zoë", "zoe"), ("Björn", "bjorn"), ("François", "francois"),
    ("Łukasz", "lukasz"), ("Søren", "soren"), ("Anaïs", "anais"), ("Priya", "priya"), ("Mateus", "mateus"),
    ("Emma", "emma"), ("Noah", "noah"), ("Sofia", "sofia"), ("Liam", "liam"), ("Fatima", "fatima"),
    ("美咲", "misaki"), ("Мария", "maria"), ("محمد", "mohammed"), ("Chloé", "chloe"), ("Jürgen", "juergen"),
    ("Ingrid", "ingrid"), ("Wei", "wei"), ("Olivia", "olivia"), ("Hannah", "hannah"),
]
_LAST_NAMES = [
    ("Klameth", "klameth"), ("García", "garcia"), ("Müller", "mueller"), ("Nguyễn", "nguyen"),
    ("O'Brien", "obrien"), ("van der Berg", "vanderberg"), ("Dubois", "dubois"), ("Kowalski", "kowalski"),
    ("Smith", "smith"), ("Johansson", "johansson"), ("田中", "tanaka"), ("Иванова", "ivanova"),
    ("Al-Sayed", "alsayed"), ("Rossi", "rossi"), ("Silva", "silva"), ("Jensen", "jensen"),
    ("Zhang", "zhang"), ("Patel", "patel"), ("Novák", "novak"), ("Brown", "brown"),
]
# Score 0..10; more 8-10 than 0-3, as real NPS programmes see.
_NPS = _weighted(list(range(11)), [3, 1, 1, 2, 2, 4, 5, 9, 16, 25, 22])
_COMMENTS = {
    "promoter": [
        "Quick delivery, friendly support.", "Onboarding was smooth and the team was very responsive.",
        "Great product, it saves us hours every week.", "Our account manager really knows our business.",
        "Everything just works.", "Best vendor we have worked with this year.",
    ],
    "passive": [
        "Good product, but the reporting could be better.", "Does the job. Pricing is a bit high.",
        "Support is fine, sometimes slow on weekends.", "OK overall; the new UI takes getting used to.",
    ],
    "detractor": [
        "Support took a week to answer my ticket.", "The last release broke our integration twice.",
        "Invoices are wrong every month and nobody fixes it.", "Too expensive for what we get.",
        "Onboarding was chaotic, nobody owned our project.",
    ],
}
_INTERNATIONAL_COMMENTS = [
    "非常に満足しています 👍", "Très bien, merci ✨", "Всё отлично, спасибо!", "الخدمة ممتازة، شكراً جزيلاً",
    "Sehr zufrieden 😊", "👎 viel zu langsam", "服务很好，但价格偏高", "Ótimo atendimento! 🎉",
    "Mycket bra support 🙌", "Obsługa klienta mogłaby być szybsza 😕",
]
_DRIVERS = {
    "promoter": ["Value for Money", "Customer Support", "Product Quality", "Ease of Use", "Delivery", "Reliability"],
    "passive": ["Value for Money", "Ease of Use", "Documentation", "Response Time", "Product Quality"],
    "detractor": ["Response Time", "Billing", "Reliability", "Onboarding", "Value for Money", "Documentation"],
}
_DRIVER_COUNT = _weighted([0, 1, 2, 3], [20, 40, 25, 15])
_TAGS = ["Delivery speed", "Pricing", "Support quality", "Bug", "Feature request", "Onboarding", "Billing issue", "Praise"]
_HOURS = _weighted(list(range(24)), [1, 1, 1, 1, 1, 2, 4, 7, 9, 10, 10, 9, 8, 9, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1])
_MALFORMED_DATES = ["{year}-02-30 10:00:00", "not a date", "05/02/{year} 14:00"]
INVALID_KINDS = ["nps_out_of_range", "missing_cgid", "malformed_response_date", "nps_not_numeric", "nps_missing"]



@dataclass(frozen=True)
class _Account:
    name: str
    number: str  # the CRM id ("Account Number" property), stable per account
    domain: str
    segment: str
    country: str
    products: tuple[str, ...]


class _Timings:
    """Creation, order, send and response epochs of many records, as compact parallel arrays."""

    def __init__(self) -> None:
        self.created = array("q")
        self.ordered = array("q")
        self.sent = array("q")
        self.responded = array("q")

    def add(self, rng: random.Random, sent: int, responded: int | None) -> None:
        # Invitations go out hours to days before the answer; the survey record is created shortly
        # before sending, for an order placed up to two weeks earlier (at midnight, as order dates are).
        created = sent - rng.randrange(300, 3 * 3600)
        self.created.append(created)
        self.ordered.append(created - created % DAY - rng.randrange(15) * DAY)
        self.sent.append(sent)
        if responded is not None:
            self.responded.append(responded)


class RecordFactory:
    """Makes the seed records of a ``SeedSpec`` and, later, fresh responses for the same tenant."""

    def __init__(self, spec: SeedSpec) -> None:
        self.spec = spec
        now = _utc_now()
        end = spec.end or now.date()
        self._window_start = _epoch(end - timedelta(days=spec.days - 1))
        # Data "ending today" must not lie in the future: today's part is squeezed before now.
        self._cap = min(_epoch(end + timedelta(days=1)), max(_epoch(end), int(now.timestamp()) - 60))
        self._accounts = _make_accounts(random.Random(f"{spec.seed}:accounts"), spec.accounts)
        # A few big accounts answer most surveys, as in real programmes.
        self._account_weights = _weighted(self._accounts, [1 / (rank + 1) ** 0.7 for rank in range(spec.accounts)])
        self._fresh_rng = random.Random(f"{spec.seed}:fresh")
        self._last_cgid = CGID_BASE

    # -- seed ----------------------------------------------------------------------------------------

    def seed(self) -> tuple[Iterator[dict[str, Any]], Iterator[dict[str, Any]]]:
        """(responses in response-time order, non-responses in send order): the orders in which a feed
        would have assigned their sync ids. Records are generated lazily, one at a time.

        The ``invalid`` records are spread evenly through the responses, cycling through ``INVALID_KINDS``.
        CGIDs are assigned in creation order across both kinds, as both are survey records.
        """
        plan_rng = random.Random(f"{self.spec.seed}:plan")
        total = self.spec.responses + self.spec.invalid
        answered = _Timings()
        for responded in sorted(self._moment(plan_rng) for _ in range(total)):
            lag = plan_rng.randrange(1800, 8 * 3600) if plan_rng.random() < 0.7 else plan_rng.randrange(DAY, 5 * DAY)
            answered.add(plan_rng, responded - lag, responded)
        unanswered = _Timings()
        for sent in sorted(self._moment(plan_rng) for _ in range(self.spec.non_responses)):
            unanswered.add(plan_rng, sent, None)
        cgids = self._assign_cgids(plan_rng, answered.created + unanswered.created)
        return (
            self._seed_responses(answered, cgids[:total]),
            self._seed_non_responses(unanswered, cgids[total:]),
        )

    def _seed_responses(self, timings: _Timings, cgids: array) -> Iterator[dict[str, Any]]:
        invalid = self.spec.invalid
        total = len(cgids)
        invalid_at = {int((k + 0.5) * total / invalid): k for k in range(invalid)}
        rng = random.Random(f"{self.spec.seed}:responses")
        for i in range(total):
            record = self._response(rng, cgids[i], timings, i)
            if i in invalid_at:
                _corrupt(record, invalid_at[i])
            yield record

    def _seed_non_responses(self, timings: _Timings, cgids: array) -> Iterator[dict[str, Any]]:
        rng = random.Random(f"{self.spec.seed}:non-responses")
        for i, cgid in enumerate(cgids):
            yield self._base(rng, cgid, timings, i)

    def _moment(self, rng: random.Random) -> int:
        """A response/send time: a random day of the window, mostly during business hours."""
        day_start = self._window_start + rng.randrange(self.spec.days) * DAY
        moment = day_start + _pick(rng, _HOURS) * 3600 + rng.randrange(3600)
        if moment >= self._cap:
            moment = day_start + (moment - day_start) * (self._cap - day_start) // DAY
        return moment

    def _assign_cgids(self, rng: random.Random, created: array) -> array:
        """CGIDs ascend with creation time, with gaps (records deleted or in other programmes)."""
        cgids = array("q", bytes(8 * len(created)))
        cgid = self._last_cgid
        for index in sorted(range(len(created)), key=created.__getitem__):
            cgid += rng.randint(1, 3)
            cgids[index] = cgid
        self._last_cgid = cgid
        return cgids

    # -- fresh responses -------------------------------------------------------------------------------

    def fresh_responses(self, count: int, responded_at: datetime | None = None) -> list[dict[str, Any]]:
        """New valid responses with new CGIDs. Without ``responded_at`` they were answered minutes ago
        (ascending); with it, all carry that response time (late arrivals on an old date)."""
        rng = self._fresh_rng
        if responded_at is None:
            # After every response seeded so far (the seed ends a minute before it was made), so
            # "new" really is newest: near midnight UTC today's seeded part is squeezed into the
            # last minutes, and "a few minutes ago" would land before it.
            now = int(_utc_now().timestamp())
            floor = max(self._cap + 1, now - 600)
            # One `random()` per moment whatever the span: `randint` consumes a number of draws that
            # depends on the span (rejection sampling), and the span here is the real time since
            # the seed, so every record drawn after it (account, person, score) varied with how
            # long the caller took (the demo's second pass: 25 or 26 records created).
            low = min(floor, now)
            moments = sorted(low + int(rng.random() * (now - low + 1)) for _ in range(count))
        else:
            moments = [_epoch_of(responded_at)] * count
        timings = _Timings()
        for responded in moments:
            timings.add(rng, responded - rng.randrange(1800, 8 * 3600), responded)
        records = []
        for i in range(count):
            self._last_cgid += rng.randint(1, 3)
            records.append(self._response(rng, self._last_cgid, timings, i))
        return records

    # -- records -----------------------------------------------------------------------------------------

    def _person(self, index: int) -> tuple[Any, tuple[str, str], tuple[str, str]]:
        """Person ``index`` of the pool: a distinct (account, first name, last name) per index."""
        account = self._accounts[index % len(self._accounts)]
        rest = index // len(self._accounts)
        return account, _FIRST_NAMES[rest % len(_FIRST_NAMES)], _LAST_NAMES[(rest // len(_FIRST_NAMES)) % len(_LAST_NAMES)]

    def _base(self, rng: random.Random, cgid: int, timings: _Timings, i: int) -> dict[str, Any]:
        """The fields every survey record has, responded or not (expansions: ``properties`` only)."""
        if self.spec.people:
            account, (first, first_ascii), (last, last_ascii) = self._person(rng.randrange(self.spec.people))
        else:
            account = _pick(rng, self._account_weights)
            first, first_ascii = rng.choice(_FIRST_NAMES)
            last, last_ascii = rng.choice(_LAST_NAMES)
        country = account.country if rng.random() < 0.85 else rng.choice(_COUNTRY_CODES)
        language, calling_code = _COUNTRIES[country]
        record: dict[str, Any] = {
            "number_customergauge": cgid,
            "number_customer": f"ORD-{cgid - CGID_BASE + 1000}",
            "contact": {"first_name": first, "last_name": last},
            "account": {"name": account.name},
        }
        roll = rng.random()
        if roll < 0.03:  # missing e-mail in each of the ways exports show it
            missing = rng.randrange(3)
            if missing < 2:
                record["email"] = None if missing == 0 else ""
        else:
            email = f"{first_ascii}.{last_ascii}@{account.domain}"
            if roll < 0.13:
                email = email.upper() if rng.random() < 0.5 else email.title()
            record["email"] = email
        record["phone"] = f"{calling_code}{rng.randrange(10**8, 10**9)}" if rng.random() < 0.8 else None
        record["date_creation"] = _format(timings.created[i])
        record["date_order"] = _format(timings.ordered[i])
        record["date_email_sent"] = _format(timings.sent[i])
        touchpoint, code = _pick(rng, _TOUCHPOINTS)
        properties = [
            {"field": "Touchpoint", "reference": touchpoint},
            {"field": "Country", "reference": country},
            {"field": "Language", "reference": language if rng.random() < 0.9 else "en"},
            {"field": "Channel", "reference": _pick(rng, _CHANNELS)},
            {"field": "Account Number", "reference": account.number},
            {"field": "Segment", "reference": account.segment},
            {"field": "Product", "reference": rng.choice(account.products)},
            {"field": "Survey ID", "reference": f"SRV-{code}-01"},
        ]
        roll = rng.random()
        if roll < 0.01:
            rng.choice(properties)["reference"] = None
        elif roll < 0.02:
            properties.pop(rng.randrange(len(properties)))
        record["properties"] = properties
        record["custom_fields"] = [
            {"field": "Assignment_ID", "reference": f"ASG-{rng.randrange(10**5, 10**6)}" if rng.random() < 0.3 else None}
        ]
        return record

    def _response(self, rng: random.Random, cgid: int, timings: _Timings, i: int) -> dict[str, Any]:
        base = self._base(rng, cgid, timings, i)
        nps = _pick(rng, _NPS)
        category = "promoter" if nps >= 9 else "passive" if nps >= 7 else "detractor"
        if category == "detractor" and rng.random() < 0.4:
            base["properties"].append(
                {"field": "Case Link", "reference": f"https://support.example.com/cases/{rng.randrange(10**7, 10**8)}"}
            )
        record: dict[str, Any] = {}
        for key, value in base.items():
            record[key] = value
            if key == "phone":
                record["nps"] = nps
                record["comment"] = _comment(rng, category)
            elif key == "date_email_sent":
                record["date_survey_response"] = _format(timings.responded[i])
        record["drivers"] = [
            {"label": label}
            for label in rng.sample(_DRIVERS[category], _pick(rng, _DRIVER_COUNT))
        ]
        record["tags"] = [{"label": label} for label in rng.sample(_TAGS, rng.choice((0, 0, 1, 1, 2)))]
        questions = [{"question": "How easy was it to order?", "answer": str(rng.randint(1, 5))}]
        if rng.random() < 0.5:
            questions.append({"question": "Did we resolve your issue?", "answer": rng.choice(("Yes", "No", "Partially"))})
        record["questions"] = questions
        return record


def _comment(rng: random.Random, category: str) -> str | None:
    roll = rng.random()
    if roll < 0.40:
        return None
    if roll < 0.45:
        return rng.choice(_INTERNATIONAL_COMMENTS)
    if roll < 0.46:  # very long verbatims (5-20 KB) break naive column widths and CSV tools
        target = rng.randint(5000, 20000)
        parts: list[str] = []
        size = 0
        while size < target:
            sentence = rng.choice(_COMMENTS[category] + _INTERNATIONAL_COMMENTS)
            parts.append(sentence)
            size += len(sentence.encode()) + 1
        return " ".join(parts)
    return rng.choice(_COMMENTS[category])


def _corrupt(record: dict[str, Any], k: int) -> None:
    """Turn a valid response into the ``k``-th invalid one (kinds cycle; malformed dates cycle too)."""
    kind = INVALID_KINDS[k % len(INVALID_KINDS)]
    if kind == "nps_out_of_range":
        record["nps"] = 11
    elif kind == "missing_cgid":
        del record["number_customergauge"]
    elif kind == "malformed_response_date":
        year = record["date_survey_response"][:4]
        record["date_survey_response"] = _MALFORMED_DATES[(k // len(INVALID_KINDS)) % len(_MALFORMED_DATES)].format(year=year)
    elif kind == "nps_not_numeric":
        record["nps"] = "ten"
    else:
        del record["nps"]


def _make_accounts(rng: random.Random, count: int) -> list[_Account]:
    prefixes = _COMPANY_PREFIXES[:]
    rng.shuffle(prefixes)
    numbers = rng.sample(range(10**6, 10**7), count)
    accounts = []
    for i in range(count):
        (prefix, prefix_slug) = prefixes[i % len(prefixes)]
        # (i + i // 20) % 10 walks every prefix/suffix pair once before names repeat with a number.
        (suffix, suffix_slug) = _COMPANY_SUFFIXES[(i + i // len(prefixes)) % len(_COMPANY_SUFFIXES)]
        generation = i // (len(prefixes) * len(_COMPANY_SUFFIXES))
        name = f"{prefix} {suffix}" + (f" {generation + 1}" if generation else "")
        slug = f"{prefix_slug}-{suffix_slug}" + (f"{generation + 1}" if generation else "")
        products = tuple(rng.sample(_PRODUCTS, rng.randint(1, 2)))
        accounts.append(
            _Account(
                name=name,
                number=f"SF-{numbers[i]:07d}",
                domain=f"{slug}.example.com",
                segment=_pick(rng, _SEGMENTS),
                country=rng.choice(_COUNTRY_CODES),
                products=products,
            )
        )
    return accounts




def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _epoch(day: date) -> int:
    return calendar.timegm(day.timetuple())


def _epoch_of(moment: datetime) -> int:
    """Naive datetimes are UTC (the API has no timezone); aware ones are converted."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return calendar.timegm(moment.timetuple())


@cache
def _day_string(days_since_epoch: int) -> str:
    return (date(1970, 1, 1) + timedelta(days=days_since_epoch)).isoformat()


def _format(epoch: int) -> str:
    """``YYYY-MM-DD HH:MM:SS`` without timezone; ~10x faster than strftime, which matters at 1M rows."""
    days, seconds = divmod(epoch, DAY)
    return f"{_day_string(days)} {seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
