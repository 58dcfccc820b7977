"""core/canonical.py renders what PostgreSQL renders: jsonb text, salts,
commitments, times and the whole canonical change, byte for byte."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from simtrail import canonical
from tests.conftest import Database, Server

EXAMPLES = int(os.environ.get("SIMTRAIL_CANONICAL_EXAMPLES", "300"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

# jsonb refuses \u0000 and lone surrogates; everything else is fair.
texts = st.text(
    alphabet=st.characters(codec="utf-8", blacklist_characters="\x00"),
    max_size=12,
)
keys = st.one_of(texts, st.sampled_from(["a", "b", "aa", "é", "ü", "Z", "a b", "\n"]))
numbers = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.builds(
        lambda m, e: Decimal(m).scaleb(e),
        st.integers(min_value=-(10**20), max_value=10**20),
        st.integers(min_value=-25, max_value=25),
    ),
    st.sampled_from([Decimal("-0"), Decimal("-0.00"), Decimal("0E-7"), Decimal("1E+3")]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)
    ),
    max_leaves=20,
)


def _input_text(value: Any) -> str:
    """JSON as a client might send it: keys unsorted, numbers with exponents."""
    if isinstance(value, dict):
        pairs = (f"{canonical.jsonb_text(k)}:{_input_text(v)}" for k, v in value.items())
        return "{" + ",".join(pairs) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_input_text(v) for v in value) + "]"
    if isinstance(value, Decimal):
        return str(value)
    return canonical.jsonb_text(value)


@pytest.fixture
def pg(server: Server) -> Any:
    with server.admin() as conn:
        yield conn


def _one(conn: psycopg.Connection[Any], query: str, params: Any) -> Any:
    row = conn.execute(query.encode(), params).fetchone()
    assert row is not None
    return row[0]


@SETTINGS
@given(value=values)
@example(value={"b": 1, "aa": Decimal("12.50"), "a": "x\"\\\b\f\n\r\t\x01\x1f\x7fé😀"})
@example(value=[Decimal("-0.000"), Decimal("1E+2"), Decimal("1.50E-3"), 10**25])
def test_jsonb_text_is_postgresqls(pg: psycopg.Connection[Any], value: Any) -> None:
    theirs = _one(pg, "SELECT %s::jsonb::text", (_input_text(value),))
    assert canonical.jsonb_text(value) == theirs
    # What PostgreSQL prints reads back to the same text.
    assert canonical.jsonb_text(canonical.loads(theirs)) == theirs


@SETTINGS
@given(
    secret=st.binary(min_size=32, max_size=32),
    change_id=st.integers(min_value=1, max_value=2**62),
    side=st.sampled_from(["old", "new"]),
    column=keys,
    value=values,
)
def test_salt_and_commitment_are_postgresqls(
    pg: psycopg.Connection[Any], secret: bytes, change_id: int, side: str, column: str, value: Any
) -> None:
    sql_salt, sql_commit = pg.execute(
        b"SELECT s, encode(sha256(s || convert_to(%(v)s::jsonb::text, 'UTF8')), 'hex')"
        b" FROM (SELECT substring(sha256(%(k)s || convert_to(%(id)s::bigint::text || '/' ||"
        b" %(side)s || '/' || %(col)s, 'UTF8')) FROM 1 FOR 16) AS s) AS x",
        {"k": secret, "id": change_id, "side": side, "col": column, "v": _input_text(value)},
    ).fetchone() or (None, None)
    assert canonical.salt(secret, change_id, side, column) == sql_salt
    assert canonical.commitment(bytes(sql_salt), value) == sql_commit


@SETTINGS
@given(at=st.datetimes(min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2200, 1, 1),
                       timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=-7,
                                                                                    minutes=-30))])))
def test_utc_text_is_to_char(pg: psycopg.Connection[Any], at: dt.datetime) -> None:
    theirs = _one(
        pg,
        "SELECT to_char(%s::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
        (at,),
    )
    assert canonical.utc_text(at) == theirs


CANON_SQL = b"""
SELECT jsonb_build_object('v', 1, 'seq', %(seq)s::bigint, 'id', %(id)s::bigint,
    'tenant_id', %(tenant)s::text, 'table_name', %(table)s::text, 'operation', %(op)s::text,
    'row_pk', %(row_pk)s::jsonb, 'old_pk', %(old_pk)s::jsonb,
    'old_data', (SELECT jsonb_object_agg(k, encode(sha256(substring(sha256(%(secret)s ||
        convert_to(%(id)s::bigint::text || '/old/' || k, 'UTF8')) FROM 1 FOR 16) ||
        convert_to(v::text, 'UTF8')), 'hex')) FROM jsonb_each(%(old)s::jsonb) AS e(k, v)),
    'new_data', (SELECT jsonb_object_agg(k, encode(sha256(substring(sha256(%(secret)s ||
        convert_to(%(id)s::bigint::text || '/new/' || k, 'UTF8')) FROM 1 FOR 16) ||
        convert_to(v::text, 'UTF8')), 'hex')) FROM jsonb_each(%(new)s::jsonb) AS e(k, v)),
    'changed_at', to_char(%(at)s::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    'actor', %(actor)s::jsonb, 'moved', %(moved)s::text)::text
"""

images = st.one_of(st.none(), st.dictionaries(keys, values, min_size=1, max_size=6))


@SETTINGS
@given(
    seq=st.integers(min_value=1, max_value=2**40),
    change_id=st.integers(min_value=1, max_value=2**62),
    tenant=st.one_of(st.none(), texts),
    op=st.sampled_from(["INSERT", "UPDATE", "DELETE", "TRUNCATE"]),
    row_pk=st.dictionaries(keys, scalars, min_size=1, max_size=3),
    old_pk=st.one_of(st.none(), st.dictionaries(keys, scalars, min_size=1, max_size=2)),
    old=images,
    new=images,
    actor=st.dictionaries(keys, scalars, max_size=4),
    moved=st.sampled_from([None, "in", "out"]),
    secret=st.binary(min_size=32, max_size=32),
    prev=st.binary(min_size=32, max_size=32),
)
def test_canonical_change_and_hash_are_postgresqls(
    pg: psycopg.Connection[Any], seq: int, change_id: int, tenant: str | None, op: str,
    row_pk: dict[str, Any], old_pk: dict[str, Any] | None, old: dict[str, Any] | None,
    new: dict[str, Any] | None, actor: dict[str, Any], moved: str | None, secret: bytes,
    prev: bytes,
) -> None:
    at = dt.datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=dt.UTC)
    params = {
        "seq": seq, "id": change_id, "tenant": tenant, "table": "public.vitals", "op": op,
        "row_pk": _input_text(row_pk), "old_pk": None if old_pk is None else _input_text(old_pk),
        "old": None if old is None else _input_text(old),
        "new": None if new is None else _input_text(new),
        "secret": secret, "at": at, "actor": _input_text(actor), "moved": moved,
    }
    theirs = _one(pg, CANON_SQL.decode(), params)
    ours = canonical.canon_text(
        seq=seq, change_id=change_id, tenant_id=tenant, table_name="public.vitals",
        operation=op, row_pk=row_pk, old_pk=old_pk,
        old_commit=canonical.commit_image(secret, change_id, "old", old),
        new_commit=canonical.commit_image(secret, change_id, "new", new),
        changed_at=canonical.utc_text(at), actor=actor, moved=moved,
    )
    assert ours == theirs
    sql_hash = _one(pg, "SELECT sha256(%s || convert_to(%s, 'UTF8'))", (prev, theirs))
    assert canonical.link(prev, ours) == bytes(sql_hash)
    assert canonical.link(prev, ours) == hashlib.sha256(prev + theirs.encode()).digest()


def test_a_float_is_refused() -> None:
    with pytest.raises(TypeError, match="Decimal"):
        canonical.jsonb_text({"a": 1.5})


@settings(max_examples=max(EXAMPLES // 3, 10), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(old=images, new=images, actor=st.dictionaries(keys, scalars, max_size=3),
       tenant=st.one_of(st.none(), texts), secret=st.binary(min_size=32, max_size=32))
def test_the_seals_own_sql_encoding_is_this_one(
    installed_db: Database, old: dict[str, Any] | None, new: dict[str, Any] | None,
    actor: dict[str, Any], tenant: str | None, secret: bytes,
) -> None:
    """What simtrail.change_canon (seal.sql) hashes is what canon_text renders."""
    at = dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC)
    theirs = installed_db.sql(
        "SELECT simtrail.change_canon(%s, 7, 42, %s, 'public.vitals', 'UPDATE', '{\"id\": 1}',"
        " NULL, %s::jsonb, %s::jsonb, %s, %s::jsonb, 'in') AS t",
        (secret, tenant, None if old is None else _input_text(old),
         None if new is None else _input_text(new), at, _input_text(actor)))[0]["t"]
    assert theirs == canonical.canon_text(
        seq=7, change_id=42, tenant_id=tenant, table_name="public.vitals", operation="UPDATE",
        row_pk={"id": 1}, old_pk=None, old_commit=canonical.commit_image(secret, 42, "old", old),
        new_commit=canonical.commit_image(secret, 42, "new", new),
        changed_at=canonical.utc_text(at), actor=actor, moved="in")


@given(secret=st.binary(min_size=32, max_size=32), change_id=st.integers(1, 2**62),
       column=keys)
def test_the_salter_is_the_salt(secret: bytes, change_id: int, column: str) -> None:
    assert canonical.salter(secret)(change_id, "new", column) == canonical.salt(
        secret, change_id, "new", column)
