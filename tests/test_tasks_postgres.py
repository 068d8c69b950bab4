"""The io.kestra.plugin.jdbc.postgresql tasks against a real PostgreSQL database."""

from __future__ import annotations

import csv
import json
import socket
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pydantic import ValidationError

from conftest import jdbc_of
from flowhawk.errors import TaskError, TaskKilled
from flowhawk.tasks.pgconn import connect_task
from flowhawk.tasks.postgres import (
    CopyIn,
    CopyOut,
    Queries,
    Query,
    bind_named,
    iso_duration,
    split_sql,
)


def make(cls: type, url: str, **props: Any) -> Any:
    return cls.model_validate({"id": "t", "type": cls.types[0], **jdbc_of(url), **props})


def scalar(url: str, sql: str) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql).fetchone()
        return row[0] if row else None


def table_exists(url: str, name: str) -> bool:
    return scalar(url, f"SELECT to_regclass('{name}') IS NOT NULL") is True


def stored(ctx: Any, tmp_path: Path, name: str, text: str) -> str:
    local = tmp_path / name
    local.write_text(text, encoding="utf-8")
    return ctx.put_file(local, name)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- SQL text ---------------------------------------------------------------------------


def test_split_sql_respects_literals_comments_and_lines() -> None:
    sql = (
        "-- leading comment; not a statement\n"
        "CREATE TABLE a (x text default 'a;b');\n"
        "/* block; /* nested; */ still */ INSERT INTO a VALUES (E'it\\'s;');\n"
        'SELECT "odd;name" FROM a;\n'
        "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;\n"
        "  ;  -- empty\n"
        "SELECT 1"
    )
    statements = split_sql(sql)
    assert [s.text.split()[0] for s in statements] == [
        "CREATE",
        "INSERT",
        "SELECT",
        "CREATE",
        "SELECT",
    ]
    assert [s.line for s in statements] == [2, 3, 4, 5, 7]
    assert statements[0].text == "CREATE TABLE a (x text default 'a;b')"
    assert statements[1].text == "INSERT INTO a VALUES (E'it\\'s;')"
    assert "$body$ SELECT 1; $body$" in statements[3].text
    assert split_sql("-- only a comment\n ; ;") == []


def test_bind_named_only_touches_real_placeholders() -> None:
    query, params = bind_named(
        "SELECT :a::int, ':a', \"x:a\", 50 % 3, arr[1:2] -- :a\n FROM t WHERE b = :b AND c = :unknown",
        {"a": 1, "b": "x"},
    )
    assert query == (
        "SELECT %(a)s::int, ':a', \"x:a\", 50 %% 3, arr[1:2] -- :a\n"
        " FROM t WHERE b = %(b)s AND c = :unknown"
    )
    assert params == {"a": 1, "b": "x"}
    assert bind_named("SELECT '%' , :z", {"a": 1}) == ("SELECT '%' , :z", None)


def test_iso_duration() -> None:
    from datetime import timedelta

    assert iso_duration(timedelta(hours=1, minutes=30)) == "PT1H30M"
    assert iso_duration(timedelta(days=2)) == "P2D"
    assert iso_duration(timedelta(0)) == "PT0S"
    assert iso_duration(timedelta(days=-1, seconds=86399)) == "-PT1S"


# -- Queries -----------------------------------------------------------------------------

COURSE_SQL = """
CREATE TABLE IF NOT EXISTS public.green_tripdata (
    unique_row_id text PRIMARY KEY,
    filename text,
    VendorID int,
    fare_amount numeric
);
CREATE TABLE IF NOT EXISTS green_staging (LIKE public.green_tripdata);
INSERT INTO green_staging (unique_row_id, filename, VendorID, fare_amount)
VALUES ('a', 'f.csv', 1, 10.5), ('b', 'f.csv', 2, 7), ('c', 'f.csv', NULL, 3.25);
UPDATE green_staging SET filename = 'green_tripdata_2019-01.csv';
MERGE INTO public.green_tripdata AS T
USING green_staging AS S ON T.unique_row_id = S.unique_row_id
WHEN NOT MATCHED THEN
  INSERT (unique_row_id, filename, VendorID, fare_amount)
  VALUES (S.unique_row_id, S.filename, S.VendorID, S.fare_amount);
SELECT count(*) AS n, sum(fare_amount) AS total FROM public.green_tripdata;
"""


def test_queries_run_ddl_update_merge_and_fetch(fresh_pg_url: str, make_ctx: Any) -> None:
    ctx = make_ctx()
    task = make(Queries, fresh_pg_url, sql=COURSE_SQL, fetchType="FETCH_ONE")
    out = task.run(ctx)
    assert out["row"] == {"n": 3, "total": 20.75}
    assert out["size"] == 1
    assert out["outputs"] == [{"row": {"n": 3, "total": 20.75}, "size": 1}]
    assert scalar(fresh_pg_url, "SELECT filename FROM green_tripdata WHERE unique_row_id='b'") == (
        "green_tripdata_2019-01.csv"
    )
    infos = [msg for level, msg in ctx.logs if level == "INFO"]
    assert any("UPDATE 3" in msg for msg in infos)
    assert any("MERGE 3" in msg for msg in infos)
    debug = "\n".join(msg for level, msg in ctx.logs if level == "DEBUG")
    assert "statement 5/6 of `sql` (line 12): MERGE INTO public.green_tripdata" in debug

    # running it again merges nothing new
    ctx2 = make_ctx()
    make(Queries, fresh_pg_url, sql=COURSE_SQL).run(ctx2)
    assert any("MERGE 0" in msg for _, msg in ctx2.logs)
    assert scalar(fresh_pg_url, "SELECT count(*) FROM green_tripdata") == 3


def test_queries_roll_back_when_a_later_statement_fails(fresh_pg_url: str, make_ctx: Any) -> None:
    sql = (
        "CREATE TABLE kept (x int);\n"
        "INSERT INTO kept VALUES (1);\n"
        "\n"
        "INSERT INTO kept SELECT y FROM missing_table;\n"
    )
    with pytest.raises(TaskError) as info:
        make(Queries, fresh_pg_url, sql=sql).run(make_ctx())
    message = str(info.value)
    assert 'relation "missing_table" does not exist' in message
    assert "statement 3/3 of `sql` (line 4, column 32)" in message
    assert "rolled back" in message
    assert not table_exists(fresh_pg_url, "kept")


def test_queries_without_transaction_keep_earlier_statements(
    fresh_pg_url: str, make_ctx: Any
) -> None:
    sql = "CREATE TABLE kept (x int); INSERT INTO kept VALUES (1); SELECT 1/0;"
    with pytest.raises(TaskError, match="division by zero"):
        make(Queries, fresh_pg_url, sql=sql, transaction=False).run(make_ctx())
    assert scalar(fresh_pg_url, "SELECT count(*) FROM kept") == 1


def test_queries_fetch_outputs_each_result(fresh_pg_url: str, make_ctx: Any) -> None:
    sql = "SELECT 1 AS a UNION ALL SELECT 2; CREATE TABLE z (x int); SELECT 'x' AS b;"
    out = make(Queries, fresh_pg_url, sql=sql, fetchType="FETCH").run(make_ctx())
    assert out["outputs"] == [
        {"rows": [{"a": 1}, {"a": 2}], "size": 2},
        {"rows": [{"b": "x"}], "size": 1},
    ]
    assert out["rows"] == [{"b": "x"}]


# -- Query -----------------------------------------------------------------------------------

TYPED_SQL = """
SELECT 7 AS n, 2.50::numeric AS price, 10::numeric AS whole,
       DATE '2019-01-31' AS day, TIMESTAMPTZ '2019-01-01 10:00:00+00' AS ts,
       '6f1c1a9e-0d5f-4c52-9d7a-3c1c2f1b2a10'::uuid AS id, INTERVAL '90 minutes' AS span,
       '{"k": [1, 2]}'::jsonb AS doc, '\\x0102'::bytea AS raw, NULL AS nothing,
       ARRAY[1, 2] AS arr, true AS flag
"""


def test_query_fetch_one_makes_values_json_friendly(fresh_pg_url: str, make_ctx: Any) -> None:
    out = make(Query, fresh_pg_url, sql=TYPED_SQL, fetchType="FETCH_ONE", timeZoneId="UTC").run(
        make_ctx()
    )
    assert out == {
        "row": {
            "n": 7,
            "price": 2.5,
            "whole": 10,
            "day": "2019-01-31",
            "ts": "2019-01-01T10:00:00+00:00",
            "id": "6f1c1a9e-0d5f-4c52-9d7a-3c1c2f1b2a10",
            "span": "PT1H30M",
            "doc": {"k": [1, 2]},
            "raw": "AQI=",
            "nothing": None,
            "arr": [1, 2],
            "flag": True,
        },
        "size": 1,
    }
    json.dumps(out)


def test_query_time_zone_applies_to_timestamps(fresh_pg_url: str, make_ctx: Any) -> None:
    sql = "SELECT TIMESTAMPTZ '2019-01-01 10:00:00+00' AS ts"
    out = make(Query, fresh_pg_url, sql=sql, fetchOne=True, timeZoneId="Europe/Paris").run(
        make_ctx()
    )
    assert out["row"]["ts"] == "2019-01-01T11:00:00+01:00"
    with pytest.raises(TaskError, match="timeZoneId"):
        make(Query, fresh_pg_url, sql=sql, timeZoneId="Mars/Olympus").run(make_ctx())


def test_query_fetch_types_and_parameters(fresh_pg_url: str, make_ctx: Any, tmp_path: Path) -> None:
    setup = (
        "CREATE TABLE trips (id int, colour text, fare numeric);"
        "INSERT INTO trips SELECT g, CASE WHEN g % 2 = 0 THEN 'green' ELSE 'yellow' END, g * 1.5"
        " FROM generate_series(1, 10) g;"
    )
    make(Queries, fresh_pg_url, sql=setup).run(make_ctx())
    sql = "SELECT id, fare FROM trips WHERE colour = :colour AND id > :min::int ORDER BY id"
    params = {"colour": "{{ inputs.taxi }}", "min": 4}
    ctx = make_ctx({"inputs": {"taxi": "green"}})

    fetched = make(Query, fresh_pg_url, sql=sql, parameters=params, fetchType="FETCH").run(ctx)
    assert fetched == {
        "rows": [{"id": 6, "fare": 9}, {"id": 8, "fare": 12}, {"id": 10, "fare": 15}],
        "size": 3,
    }
    one = make(Query, fresh_pg_url, sql=sql, parameters=params, fetchType="FETCH_ONE").run(ctx)
    assert one == {"row": {"id": 6, "fare": 9}, "size": 1}
    none = make(Query, fresh_pg_url, sql=sql, parameters=params).run(ctx)
    assert none == {}
    legacy = make(Query, fresh_pg_url, sql=sql, parameters=params, fetch=True).run(ctx)
    assert legacy["size"] == 3

    store = make(Query, fresh_pg_url, sql=sql, parameters=params, fetchType="STORE", fetchSize=2)
    out = store.run(ctx)
    assert out["size"] == 3
    assert out["uri"].startswith("kestra:///") and out["uri"].endswith(".jsonl")
    with ctx.open_file(out["uri"]) as handle:
        lines = [json.loads(line) for line in handle.read().decode().splitlines()]
    assert lines == fetched["rows"]

    empty = make(Query, fresh_pg_url, sql="SELECT 1 WHERE false", fetchType="FETCH_ONE")
    assert empty.run(ctx) == {"row": None, "size": 0}

    # STORE of a statement returning nothing, then of INSERT ... RETURNING
    assert make(Query, fresh_pg_url, sql="UPDATE trips SET fare = fare", store=True).run(ctx) == {}
    returning = make(
        Query,
        fresh_pg_url,
        sql="INSERT INTO trips VALUES (:id, 'red', 1) RETURNING id",
        parameters={"id": 99},
        fetchType="STORE",
    ).run(ctx)
    assert returning["size"] == 1


def test_fetch_type_is_validated() -> None:
    with pytest.raises(ValidationError, match="fetchType"):
        make(Query, "postgresql://x@localhost/db", sql="SELECT 1", fetchType="ALL")


def test_syntax_error_names_line_and_column(fresh_pg_url: str, make_ctx: Any) -> None:
    sql = "SELECT 1;\nSELECT 2;\nSELEC 3 FROM\n  x;"
    with pytest.raises(TaskError) as info:
        make(Queries, fresh_pg_url, sql=sql).run(make_ctx())
    message = str(info.value)
    assert 'syntax error at or near "SELEC"' in message
    assert "statement 3/3 of `sql` (line 3, column 1)" in message

    with pytest.raises(TaskError) as info:
        make(Query, fresh_pg_url, sql="SELECT 1,\n  nope FROM pg_class").run(make_ctx())
    assert 'column "nope" does not exist' in str(info.value)
    assert "(line 2, column 3)" in str(info.value)


def test_error_shows_detail_and_hint(fresh_pg_url: str, make_ctx: Any) -> None:
    sql = "CREATE TABLE u (x int PRIMARY KEY); INSERT INTO u VALUES (1), (1);"
    with pytest.raises(TaskError) as info:
        make(Queries, fresh_pg_url, sql=sql).run(make_ctx())
    assert "duplicate key value violates unique constraint" in str(info.value)
    assert "DETAIL: Key (x)=(1) already exists." in str(info.value)


def test_password_is_masked_in_logs(fresh_pg_url: str, make_ctx: Any) -> None:
    ctx = make_ctx()
    task = make(Query, fresh_pg_url, sql="SELECT 'pw-s3cr3t' AS x", password="pw-s3cr3t")
    task.run(ctx)
    text = ctx.logs.text()
    assert "SELECT '******' AS x" in text
    assert "pw-s3cr3t" not in text


# -- connection failures ----------------------------------------------------------------------


def test_unreachable_database_message_hides_password(make_ctx: Any) -> None:
    port = closed_port()
    url = f"jdbc:postgresql://127.0.0.1:{port}/ny_taxi?user=root&password=hunter2"
    task = Query.model_validate({"id": "t", "type": Query.types[0], "url": url, "sql": "SELECT 1"})
    with pytest.raises(TaskError) as info:
        task.run(make_ctx())
    message = str(info.value)
    assert message.startswith(
        f"cannot connect to PostgreSQL at postgresql://root@127.0.0.1:{port}/ny_taxi: "
    )
    assert "Connection refused" in message
    assert "hunter2" not in message

    with pytest.raises(TaskError) as info:
        connect_task(make_ctx(), f"postgresql://root:hunter2@127.0.0.1:{port}/db")
    assert "hunter2" not in str(info.value) and "postgresql://root@127.0.0.1" in str(info.value)


def test_unknown_role_and_database_messages(fresh_pg_url: str, make_ctx: Any) -> None:
    props = jdbc_of(fresh_pg_url)
    with pytest.raises(TaskError) as info:
        connect_task(make_ctx(), props["url"], "no_such_role", "wrong-pw")
    assert 'role "no_such_role" does not exist' in str(info.value)
    assert "wrong-pw" not in str(info.value)
    with pytest.raises(TaskError, match='database "missing_db_x" does not exist'):
        connect_task(
            make_ctx(), props["url"].rsplit("/", 1)[0] + "/missing_db_x", props.get("username")
        )


# -- cancellation ---------------------------------------------------------------------------------


def test_kill_cancels_running_statement(fresh_pg_url: str, make_ctx: Any) -> None:
    ctx = make_ctx()
    task = make(Queries, fresh_pg_url, sql="CREATE TABLE k (x int); SELECT pg_sleep(30);")
    threading.Timer(0.5, ctx.cancel_event.set).start()
    started = time.monotonic()
    with pytest.raises(TaskKilled, match="statement 2/2"):
        task.run(ctx)
    assert time.monotonic() - started < 5
    assert not table_exists(fresh_pg_url, "k")
    assert (
        scalar(
            fresh_pg_url,
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%' AND pid <> pg_backend_pid()",
        )
        == 0
    )


# -- COPY ---------------------------------------------------------------------------------------------

GREEN_CSV = (
    "VendorID,lpep_pickup_datetime,store_and_fwd_flag,fare_amount,ehail_fee\n"
    "2,2019-01-01 00:10:16,N,5.5,\n"
    ",2019-01-01 00:27:11,,12,\n"
    '1,2019-01-01 00:46:20,"N",3.25,\n'
)


def _green_table(url: str, make_ctx: Any) -> None:
    make(
        Queries,
        url,
        sql=(
            "CREATE TABLE public.green_tripdata (VendorID int, lpep_pickup_datetime timestamp,"
            " store_and_fwd_flag text, fare_amount numeric, ehail_fee numeric, note text default 'x')"
        ),
    ).run(make_ctx())


def test_copy_in_csv_with_header_columns_and_nulls(
    fresh_pg_url: str, make_ctx: Any, tmp_path: Path
) -> None:
    _green_table(fresh_pg_url, make_ctx)
    ctx = make_ctx({"file": "green_tripdata_2019-01.csv"})
    uri = stored(ctx, tmp_path, "green_tripdata_2019-01.csv", GREEN_CSV)
    task = make(
        CopyIn,
        fresh_pg_url,
        **{
            "from": uri,
            "table": "public.green_tripdata",
            "format": "CSV",
            "header": True,
            "columns": [
                "VendorID",
                "lpep_pickup_datetime",
                "store_and_fwd_flag",
                "fare_amount",
                "ehail_fee",
            ],
            "nullString": "",
        },
    )
    assert task.run(ctx) == {"rowCount": 3}
    with psycopg.connect(fresh_pg_url) as conn:
        rows = conn.execute(
            "SELECT vendorid, store_and_fwd_flag, fare_amount::text, ehail_fee, note"
            " FROM green_tripdata ORDER BY lpep_pickup_datetime"
        ).fetchall()
    assert rows == [
        (2, "N", "5.5", None, "x"),
        (None, None, "12", None, "x"),
        (1, "N", "3.25", None, "x"),
    ]
    assert any("copied 3 rows" in msg for level, msg in ctx.logs if level == "INFO")


def test_copy_in_bad_row_reports_line(fresh_pg_url: str, make_ctx: Any, tmp_path: Path) -> None:
    _green_table(fresh_pg_url, make_ctx)
    ctx = make_ctx()
    uri = stored(ctx, tmp_path, "bad.csv", "VendorID,fare_amount\n1,2\nabc,3\n")
    task = make(
        CopyIn,
        fresh_pg_url,
        **{
            "from": uri,
            "table": "green_tripdata",
            "format": "CSV",
            "header": "true",
            "columns": "VendorID, fare_amount",
        },
    )
    with pytest.raises(TaskError) as info:
        task.run(ctx)
    assert 'invalid input syntax for type integer: "abc"' in str(info.value)
    assert "line 3" in str(info.value)
    assert scalar(fresh_pg_url, "SELECT count(*) FROM green_tripdata") == 0


def test_large_copy_in_streams_in_bounded_memory(
    fresh_pg_url: str, make_ctx: Any, tmp_path: Path
) -> None:
    make(Query, fresh_pg_url, sql="CREATE TABLE big (id int, name text, amount numeric)").run(
        make_ctx()
    )
    local = tmp_path / "big.tsv"
    with local.open("w") as out:
        for i in range(200_000):
            out.write(f"{i}\tname-{i:08d}-padding-padding-padding\t{i * 0.25}\n")
    size = local.stat().st_size
    assert size > 10_000_000
    ctx = make_ctx()
    uri = ctx.put_file(local, "big.tsv")
    task = make(CopyIn, fresh_pg_url, **{"from": uri, "table": "big"})
    tracemalloc.start()
    try:
        out = task.run(ctx)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out == {"rowCount": 200_000}
    assert peak < 4_000_000, f"peak Python memory {peak} for a {size}-byte file"
    assert scalar(fresh_pg_url, "SELECT count(*) FROM big") == 200_000


def test_copy_out_and_back(fresh_pg_url: str, make_ctx: Any) -> None:
    make(
        Queries,
        fresh_pg_url,
        sql=(
            "CREATE TABLE src (id int, label text, at date);"
            "INSERT INTO src VALUES (1, 'a,b', '2024-01-01'), (2, NULL, NULL), (3, 'say \"hi\"', '2024-03-01');"
            "CREATE TABLE dst (LIKE src);"
        ),
    ).run(make_ctx())
    ctx = make_ctx()
    out = make(CopyOut, fresh_pg_url, table="src", format="CSV", header=True).run(ctx)
    assert out["rowCount"] == 3 and out["uri"].endswith(".csv")
    with ctx.open_file(out["uri"]) as handle:
        text = handle.read().decode()
    assert list(csv.reader(text.splitlines()))[0] == ["id", "label", "at"]
    back = make(
        CopyIn,
        fresh_pg_url,
        **{"from": out["uri"], "table": "dst", "format": "CSV", "header": True},
    )
    assert back.run(ctx) == {"rowCount": 3}
    assert (
        scalar(fresh_pg_url, "SELECT count(*) FROM (SELECT * FROM src EXCEPT SELECT * FROM dst) d")
        == 0
    )
    assert scalar(fresh_pg_url, "SELECT count(*) FROM dst WHERE label IS NULL") == 1

    query = make(
        CopyOut,
        fresh_pg_url,
        sql="SELECT id, label FROM src WHERE id > 1 ORDER BY id;",
        delimiter="\\t",
        forceQuote=["label"],
        format="CSV",
    ).run(ctx)
    with ctx.open_file(query["uri"]) as handle:
        assert handle.read().decode() == '2\t\n3\t"say ""hi"""\n'
    assert query["rowCount"] == 2

    binary = make(CopyOut, fresh_pg_url, table="src", columns=["id"], format="BINARY").run(ctx)
    make(Query, fresh_pg_url, sql="CREATE TABLE ids (id int)").run(ctx)
    again = make(
        CopyIn, fresh_pg_url, **{"from": binary["uri"], "table": "ids", "format": "BINARY"}
    )
    assert again.run(ctx) == {"rowCount": 3}


@pytest.mark.parametrize(
    "props",
    [
        {"table": "t; DROP TABLE src"},
        {"table": '"quoted"'},
        {"table": "1abc"},
        {"table": "t", "columns": ["a", "b) FROM STDIN; DROP TABLE src; --"]},
        {"table": "t", "forceNull": ["x y"]},
    ],
)
def test_copy_refuses_unsafe_identifiers(props: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="plain"):
        make(CopyIn, "postgresql://u@localhost/db", **{"from": "kestra:///x.csv", **props})


def test_copy_refuses_unsafe_identifiers_after_rendering(
    fresh_pg_url: str, make_ctx: Any, tmp_path: Path
) -> None:
    make(Query, fresh_pg_url, sql="CREATE TABLE src (x int)").run(make_ctx())
    ctx = make_ctx({"inputs": {"t": "src (x) FROM STDIN; DROP TABLE src; --"}})
    uri = stored(ctx, tmp_path, "x.csv", "1\n")
    task = make(CopyIn, fresh_pg_url, **{"from": uri, "table": "{{ inputs.t }}"})
    with pytest.raises(TaskError, match="property `table`.*not a plain SQL name"):
        task.run(ctx)
    assert table_exists(fresh_pg_url, "src")


def test_copy_in_missing_file(fresh_pg_url: str, make_ctx: Any) -> None:
    task = make(CopyIn, fresh_pg_url, **{"from": "kestra:///nope/file.csv", "table": "x"})
    with pytest.raises(TaskError, match="property `from`.*not found"):
        task.run(make_ctx())


def test_copy_in_stops_when_killed(fresh_pg_url: str, make_ctx: Any, tmp_path: Path) -> None:
    make(Query, fresh_pg_url, sql="CREATE TABLE k (x int)").run(make_ctx())
    ctx = make_ctx()
    uri = stored(ctx, tmp_path, "k.tsv", "1\n2\n")
    ctx.cancel_event.set()
    with pytest.raises(TaskKilled, match="COPY"):
        make(CopyIn, fresh_pg_url, **{"from": uri, "table": "k"}).run(ctx)
    assert scalar(fresh_pg_url, "SELECT count(*) FROM k") == 0
