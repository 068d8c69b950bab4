"""Column layouts of the NYC TLC trip files and of the course's PostgreSQL tables.

The CSV headers are those of the DataTalksClub ``nyc-tlc-data`` releases. The table
definitions, the ``unique_row_id`` md5 formula and the MERGE follow the DataTalksClub
Kestra course flow ``postgres_taxi``: identifiers are written unquoted as the course writes
them, so PostgreSQL folds them to lower case (``VendorID`` becomes ``vendorid``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

DOUBLE = "double precision"

#: Columns that make up the course's ``unique_row_id``, in formula order. Location ids are
#: already text in the course tables, so the formula does not cast them.
_KEY_CAST = ("VendorID", "{pickup}", "{dropoff}")
_KEY_TEXT = ("PULocationID", "DOLocationID")
_KEY_CAST_TAIL = ("fare_amount", "trip_distance")


@dataclass(frozen=True)
class TaxiLayout:
    """Everything that differs between the yellow and green trip files."""

    colour: str
    csv_columns: tuple[str, ...]
    table_columns: tuple[tuple[str, str], ...]
    pickup_column: str
    dropoff_column: str

    @property
    def data_columns(self) -> tuple[tuple[str, str], ...]:
        """The table columns filled from the CSV (all but ``unique_row_id`` and ``filename``)."""
        return self.table_columns[2:]

    def filename(self, year: int, month: int) -> str:
        """The month's CSV name as the course downloads it, e.g. ``green_tripdata_2019-01.csv``."""
        if not 1 <= month <= 12:
            raise ValueError(f"month must be 1..12, got {month}")
        return f"{self.colour}_tripdata_{year:04d}-{month:02d}.csv"

    def create_table_sql(self, table: str) -> str:
        """``CREATE TABLE IF NOT EXISTS`` for the course's main (and staging) table layout."""
        width = max(len(name) for name, _ in self.table_columns) + 2
        cols = ",\n".join(
            f"    {name.ljust(width)} {sqltype}" for name, sqltype in self.table_columns
        )
        return f"CREATE TABLE IF NOT EXISTS {table} (\n{cols}\n);"

    def unique_id_sql(self, prefix: str = "") -> str:
        """The course's md5 ``unique_row_id`` expression; ``prefix`` qualifies columns (``"S."``)."""
        parts = [
            f"COALESCE(CAST({prefix}{c.format(pickup=self.pickup_column, dropoff=self.dropoff_column)}"
            " AS text), '')"
            for c in _KEY_CAST
        ]
        parts += [f"COALESCE({prefix}{c}, '')" for c in _KEY_TEXT]
        parts += [f"COALESCE(CAST({prefix}{c} AS text), '')" for c in _KEY_CAST_TAIL]
        return "md5(\n  " + " ||\n  ".join(parts) + "\n)"

    def unique_id(self, row: Mapping[str, str]) -> str:
        """The ``unique_row_id`` PostgreSQL computes for one CSV row (field texts by column).

        Numbers are rendered as PostgreSQL renders ``float8`` (shortest form, ``4.40`` becomes
        ``4.4``, ``5`` stays ``5``); timestamps the CSV's way, which is PostgreSQL's too.
        """
        parts = [
            row.get("VendorID", ""),
            row.get(self.pickup_column, ""),
            row.get(self.dropoff_column, ""),
            row.get("PULocationID", ""),
            row.get("DOLocationID", ""),
            _float8_text(row.get("fare_amount", "")),
            _float8_text(row.get("trip_distance", "")),
        ]
        return hashlib.md5("".join(parts).encode()).hexdigest()

    def copy_sql(self, table: str) -> str:
        """``COPY ... FROM STDIN`` of a month's CSV (with header) into ``table``, as CopyIn does."""
        return f"COPY {table} ({', '.join(self.csv_columns)}) FROM STDIN WITH (FORMAT csv, HEADER true)"

    def merge_sql(self, table: str, staging: str) -> str:
        """The course's ``MERGE`` of the staging table into the main table on ``unique_row_id``."""
        names = [name for name, _ in self.table_columns]
        return (
            f"MERGE INTO {table} AS T\nUSING {staging} AS S\n"
            "ON T.unique_row_id = S.unique_row_id\nWHEN NOT MATCHED THEN\n"
            f"  INSERT ({', '.join(names)})\n"
            f"  VALUES ({', '.join('S.' + n for n in names)});"
        )


def _float8_text(text: str) -> str:
    """``text`` as PostgreSQL prints it after a round trip through ``double precision``."""
    if text == "":
        return ""
    value = repr(float(text))
    return value[:-2] if value.endswith(".0") else value


def _table(csv_columns: tuple[str, ...], types: dict[str, str]) -> tuple[tuple[str, str], ...]:
    cols: list[tuple[str, str]] = [("unique_row_id", "text"), ("filename", "text")]
    for name in csv_columns:
        if name.endswith("_datetime"):
            cols.append((name, "timestamp"))
        else:
            cols.append((name, types.get(name, DOUBLE)))
    return tuple(cols)


_TYPES = {
    "VendorID": "text",
    "store_and_fwd_flag": "text",
    "RatecodeID": "text",
    "PULocationID": "text",
    "DOLocationID": "text",
    "passenger_count": "integer",
    "payment_type": "integer",
    "trip_type": "integer",
}

GREEN_COLUMNS = (
    "VendorID",
    "lpep_pickup_datetime",
    "lpep_dropoff_datetime",
    "store_and_fwd_flag",
    "RatecodeID",
    "PULocationID",
    "DOLocationID",
    "passenger_count",
    "trip_distance",
    "fare_amount",
    "extra",
    "mta_tax",
    "tip_amount",
    "tolls_amount",
    "ehail_fee",
    "improvement_surcharge",
    "total_amount",
    "payment_type",
    "trip_type",
    "congestion_surcharge",
)

YELLOW_COLUMNS = (
    "VendorID",
    "tpep_pickup_datetime",
    "tpep_dropoff_datetime",
    "passenger_count",
    "trip_distance",
    "RatecodeID",
    "store_and_fwd_flag",
    "PULocationID",
    "DOLocationID",
    "payment_type",
    "fare_amount",
    "extra",
    "mta_tax",
    "tip_amount",
    "tolls_amount",
    "improvement_surcharge",
    "total_amount",
    "congestion_surcharge",
)

LAYOUTS: dict[str, TaxiLayout] = {
    "green": TaxiLayout(
        colour="green",
        csv_columns=GREEN_COLUMNS,
        table_columns=_table(GREEN_COLUMNS, _TYPES),
        pickup_column="lpep_pickup_datetime",
        dropoff_column="lpep_dropoff_datetime",
    ),
    "yellow": TaxiLayout(
        colour="yellow",
        csv_columns=YELLOW_COLUMNS,
        table_columns=_table(YELLOW_COLUMNS, _TYPES),
        pickup_column="tpep_pickup_datetime",
        dropoff_column="tpep_dropoff_datetime",
    ),
}


def layout_for(taxi: str) -> TaxiLayout:
    """The layout of a taxi colour (``green`` or ``yellow``), with a clear error otherwise."""
    try:
        return LAYOUTS[taxi]
    except KeyError:
        raise ValueError(
            f"unknown taxi colour {taxi!r}: expected one of {', '.join(sorted(LAYOUTS))}"
        ) from None
