"""Tests for vertexkit.local.data: tables (local, GCS emulator, fake BigQuery) and checks."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pytest

from tests.gcs_emulator import create_bucket
from vertexkit.local.data import (
    ColumnSpec,
    DataValidationError,
    SchemaError,
    TableSchema,
    check_table,
    load_schema,
    read_table,
    table_statistics,
    validate_table,
    write_table,
)

# --------------------------------------------------------------------------- local files


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [1, 2, 3],
            "score": [0.5, 1.25, -2.0],
            "name": ["a", "b", "c"],
            "ok": [True, False, True],
        }
    )


def test_local_round_trip_creates_parent_dirs(tmp_path: Path, frame: pd.DataFrame) -> None:
    target = tmp_path / "nested" / "dir" / "table.csv"
    write_table(frame, str(target))
    assert target.read_text().splitlines()[0] == "id,score,name,ok"  # no index column
    pd.testing.assert_frame_equal(read_table(str(target)), frame, check_dtype=False)
    assert read_table(str(target))["ok"].tolist() == [True, False, True]


def test_relative_path_and_file_uri(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, frame: pd.DataFrame
) -> None:
    monkeypatch.chdir(tmp_path)
    write_table(frame, "data/train.csv")
    assert (tmp_path / "data" / "train.csv").is_file()
    from_uri = read_table(f"file://{tmp_path / 'data' / 'train.csv'}")
    pd.testing.assert_frame_equal(from_uri, frame, check_dtype=False)
    write_table(frame.head(1), f"file://{tmp_path / 'out.csv'}")
    assert read_table("out.csv")["name"].tolist() == ["a"]


def test_missing_local_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        read_table(str(missing))


@pytest.mark.parametrize(
    "uri",
    [
        "s3://bucket/table.csv",
        "http://example.com/table.csv",
        "",
        "file://",
        "gs://bucket-only",
        "gs://bucket/",
        "bq://only.two",
        "bq://project..table",
        "bq://project.dataset.table/extra",
    ],
)
def test_bad_uri_is_rejected_naming_uri_and_valid_forms(uri: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        read_table(uri)
    message = str(excinfo.value)
    assert repr(uri) in message
    for form in ("path/to/file.csv", "gs://bucket/object.csv", "bq://project.dataset.table"):
        assert form in message


@pytest.mark.parametrize("uri", ["s3://bucket/table.csv", "bq://project.dataset.table", ""])
def test_write_table_rejects_unsupported_destinations(uri: str, frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(uri))):
        write_table(frame, uri)


# --------------------------------------------------------------------------- GCS (emulator)


@pytest.fixture
def gcs_bucket(gcs_emulator: str) -> str:
    """An empty bucket in the emulator, which the storage client now talks to."""
    create_bucket(gcs_emulator, "vertexkit-test")
    return "vertexkit-test"


def test_gcs_round_trip(gcs_bucket: str, frame: pd.DataFrame) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    uri = f"gs://{gcs_bucket}/runs/1/train.csv"
    write_table(frame, uri)
    client = storage.Client(credentials=AnonymousCredentials())
    assert [blob.name for blob in client.list_blobs(gcs_bucket)] == ["runs/1/train.csv"]
    pd.testing.assert_frame_equal(read_table(uri), frame, check_dtype=False)


@pytest.mark.parametrize("uri", ["gs://vertexkit-test/missing.csv", "gs://no-such-bucket/x.csv"])
def test_gcs_missing_object_is_file_not_found(gcs_bucket: str, uri: str) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape(uri)):
        read_table(uri)


# --------------------------------------------------------------------------- BigQuery (fake REST)

_PAGE_SIZE = 2
_TABLE_PATH = re.compile(r"/bigquery/v2/projects/([^/]+)/datasets/([^/]+)/tables/([^/]+)(/data)?")


class _FakeBigQuery(BaseHTTPRequestHandler):
    """Just enough of the BigQuery REST API for ``Client.list_rows``: tables.get, tabledata.list."""

    server: Any

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        url = urlsplit(self.path)
        match = _TABLE_PATH.fullmatch(url.path)
        table = self.server.tables.get(match.groups()[:3]) if match else None
        if table is None:
            error = {"code": 404, "message": "Not found: Table", "status": "NOT_FOUND"}
            self._send(404, {"error": error})
            return
        fields, rows = table
        if match.group(4) is None:
            project, dataset, table_id = match.groups()[:3]
            reference = {"projectId": project, "datasetId": dataset, "tableId": table_id}
            self._send(
                200,
                {
                    "kind": "bigquery#table",
                    "tableReference": reference,
                    "schema": {"fields": fields},
                    "numRows": str(len(rows)),
                },
            )
            return
        start = int(parse_qs(url.query).get("pageToken", ["0"])[0])
        page = rows[start : start + _PAGE_SIZE]
        body: dict[str, Any] = {
            "kind": "bigquery#tableDataList",
            "totalRows": str(len(rows)),
            "rows": [{"f": [{"v": value} for value in row]} for row in page],
        }
        if start + _PAGE_SIZE < len(rows):
            body["pageToken"] = str(start + _PAGE_SIZE)
        self._send(200, body)

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass


@pytest.fixture
def bigquery_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeBigQuery)
    server.daemon_threads = True
    server.requests = []
    server.tables = {
        ("my-project", "my_dataset", "my_table"): (
            [
                {"name": "id", "type": "INTEGER", "mode": "REQUIRED"},
                {"name": "name", "type": "STRING", "mode": "NULLABLE"},
                {"name": "score", "type": "FLOAT", "mode": "NULLABLE"},
                {"name": "ok", "type": "BOOLEAN", "mode": "NULLABLE"},
            ],
            [["1", "a", "0.5", "true"], ["2", None, "1.25", "false"], ["3", "c", "-2", "true"]],
        )
    }
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("VERTEXKIT_BIGQUERY_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_bigquery_list_rows_over_several_pages(bigquery_server: Any) -> None:
    df = read_table("bq://my-project.my_dataset.my_table")
    assert list(df.columns) == ["id", "name", "score", "ok"]
    assert df["id"].tolist() == [1, 2, 3]
    assert df["name"].tolist()[0::2] == ["a", "c"] and pd.isna(df["name"][1])
    assert df["score"].tolist() == [0.5, 1.25, -2.0]
    assert df["ok"].tolist() == [True, False, True]
    table = "/bigquery/v2/projects/my-project/datasets/my_dataset/tables/my_table"
    paths = [urlsplit(path).path for path in bigquery_server.requests]
    assert paths == [table, f"{table}/data", f"{table}/data"]
    assert "pageToken=2" in bigquery_server.requests[2]


def test_bigquery_missing_table_is_file_not_found(bigquery_server: Any) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape("bq://my-project.my_dataset.nope")):
        read_table("bq://my-project.my_dataset.nope")
    assert bigquery_server.requests[0].startswith(
        "/bigquery/v2/projects/my-project/datasets/my_dataset/tables/nope"
    )


# --------------------------------------------------------------------------- schema files

_VALID_SCHEMA = """\
target: label
columns:
  age: {dtype: int, min: 0, max: 120}
  mean_radius: {dtype: float, nullable: true, max: 40}
  colour: {dtype: str, allowed: [red, green]}
  smoker: {dtype: bool}
  label: {dtype: int, allowed: [0, 1]}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "schema.yaml"
    path.write_text(text)
    return path


def test_load_valid_schema(tmp_path: Path) -> None:
    schema = load_schema(_write(tmp_path, _VALID_SCHEMA))
    assert schema.target == "label"
    assert list(schema.columns) == ["age", "mean_radius", "colour", "smoker", "label"]
    assert schema.columns["age"] == ColumnSpec(dtype="int", min=0, max=120)
    assert schema.columns["mean_radius"].nullable is True
    assert schema.columns["colour"].allowed == ["red", "green"]
    assert schema.columns["label"].allowed == [0, 1]


@pytest.mark.parametrize(
    ("text", "field", "detail"),
    [
        (
            "columns:\n  age: {dtype: double}\n",
            "columns.age.dtype",
            "'float', 'int', 'str' or 'bool'",
        ),
        ("columns:\n  age: {dtype: int, nullabel: true}\n", "columns.age.nullabel", "Extra inputs"),
        ("colums:\n  age: {dtype: int}\n", "colums", "Extra inputs"),
        ("target: label\ncolumns:\n  age: {dtype: int}\n", "target", "'label' is not one of"),
        ("columns: {}\n", "columns", "at least 1 item"),
        ("columns:\n  name: {dtype: str, min: 1}\n", "columns.name", "only apply to float and int"),
        ("columns:\n  age: {dtype: int, min: 5, max: 1}\n", "columns.age", "greater than max"),
        ("columns:\n  age: {dtype: int, min: lots}\n", "columns.age.min", "valid number"),
    ],
)
def test_invalid_schema_names_file_and_field(
    tmp_path: Path, text: str, field: str, detail: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(SchemaError) as excinfo:
        load_schema(path)
    message = str(excinfo.value)
    assert f"{path}: {field}: " in message
    assert detail in message


@pytest.mark.parametrize(
    ("text", "detail"),
    [("- age\n- label\n", "expected a mapping"), ("", "expected a mapping"), ("a: [\n", "YAML")],
)
def test_unusable_schema_file_is_schema_error(tmp_path: Path, text: str, detail: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(SchemaError, match=re.escape(str(path))) as excinfo:
        load_schema(path)
    assert detail in str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)


def test_missing_schema_file_is_schema_error(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match=re.escape(str(tmp_path / "absent.yaml"))):
        load_schema(tmp_path / "absent.yaml")


# --------------------------------------------------------------------------- validation


@pytest.fixture
def schema(tmp_path: Path) -> TableSchema:
    return load_schema(_write(tmp_path, _VALID_SCHEMA))


@pytest.fixture
def good() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [30, 45, 61],
            "mean_radius": [12.5, None, 39.0],
            "colour": ["red", "green", "red"],
            "smoker": [True, False, "true"],
            "label": [0, 1, 1],
        }
    )


def test_valid_table_has_no_violations(schema: TableSchema, good: pd.DataFrame) -> None:
    assert validate_table(good, schema) == []
    check_table(good, schema)  # does not raise


def test_csv_with_blank_int_cells_still_validates_as_int(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("n,flag\n1,0\n,1\n3,1\n")
    schema = TableSchema(
        columns={"n": ColumnSpec(dtype="int", nullable=True), "flag": ColumnSpec(dtype="bool")}
    )
    df = read_table(str(path))
    assert df["n"].dtype == "float64"  # pandas turns an int column with blanks into float
    assert validate_table(df, schema) == []


@pytest.mark.parametrize(
    ("column", "values", "expected"),
    [
        ("age", [30, 2.5, 61], "column 'age': 1 value not of type int (e.g. 2.5)"),
        ("age", [30, "old", 61], "column 'age': 1 value not of type int (e.g. 'old')"),
        ("mean_radius", [1.0, "big", None], "column 'mean_radius': 1 value not of type float"),
        ("smoker", [True, "maybe", 2], "column 'smoker': 2 values not of type bool (e.g. 'maybe')"),
        ("age", [30, None, None], "column 'age': null in 2 rows but the column is not nullable"),
        ("age", [-1, -7, 61], "column 'age': 2 values below min 0.0 (worst: -7)"),
        (
            "mean_radius",
            [55.1, 41.0, 40.5],
            "column 'mean_radius': 3 values above max 40.0 (worst: 55.1)",
        ),
        (
            "colour",
            ["red", "blue", "pink"],
            "column 'colour': 2 values not in allowed ['red', 'green'] (e.g. 'blue')",
        ),
        ("label", [0, 1, 2], "column 'label': 1 value not in allowed [0, 1] (e.g. 2)"),
    ],
)
def test_each_violation_is_reported(
    schema: TableSchema, good: pd.DataFrame, column: str, values: list[Any], expected: str
) -> None:
    good[column] = values
    problems = validate_table(good, schema)
    assert len(problems) == 1, problems
    assert problems[0].startswith(expected)


def test_missing_and_extra_columns(schema: TableSchema, good: pd.DataFrame) -> None:
    df = good.drop(columns=["age", "label"]).assign(surprise=1)
    problems = validate_table(df, schema)
    assert problems == [
        "column 'age': missing from the table",
        "column 'label': missing from the table",
        "column 'surprise': not in the schema",
    ]


def test_target_may_be_absent_when_not_required(schema: TableSchema, good: pd.DataFrame) -> None:
    features = good.drop(columns=["label"])
    assert validate_table(features, schema, require_target=False) == []
    assert validate_table(features, schema) == ["column 'label': missing from the table"]
    # Other columns are still required.
    assert validate_table(features.drop(columns=["age"]), schema, require_target=False) == [
        "column 'age': missing from the table"
    ]


def test_empty_table_is_a_violation(schema: TableSchema, good: pd.DataFrame) -> None:
    assert validate_table(good.iloc[:0], schema) == ["table has no rows"]


def test_check_table_lists_every_problem(schema: TableSchema, good: pd.DataFrame) -> None:
    good["age"] = [30, 200, 61]
    good["colour"] = ["red", "red", "blue"]
    with pytest.raises(DataValidationError) as excinfo:
        check_table(good, schema)
    lines = str(excinfo.value).splitlines()
    assert lines[0] == "data validation failed: 2 problems"
    assert lines[1].startswith("column 'age': 1 value above max 120.0 (worst: 200)")
    assert lines[2].startswith("column 'colour': 1 value not in allowed")
    assert isinstance(excinfo.value, ValueError)


# --------------------------------------------------------------------------- statistics


def test_table_statistics() -> None:
    df = pd.DataFrame(
        {
            "x": [1.0, 2.0, 3.0, None],
            "n": [4, 4, 4, 4],
            "empty": [None, None, None, None],
            "colour": ["red", "blue", "red", None],
            "ok": [True, False, True, True],
        }
    )
    df["empty"] = df["empty"].astype("float64")
    stats = table_statistics(df)
    json.dumps(stats, allow_nan=False)  # JSON-serialisable and NaN-free
    assert stats["rows"] == 4
    columns = stats["columns"]
    numeric = ("dtype", "nulls", "mean", "std", "min", "max")
    assert [columns["x"][key] for key in numeric] == ["float64", 1, 2.0, 1.0, 1.0, 3.0]
    assert [columns["n"][key] for key in numeric] == ["int64", 0, 4.0, 0.0, 4.0, 4.0]
    assert [columns["empty"][key] for key in numeric] == ["float64", 4, None, None, None, None]
    assert "unique" not in columns["x"]
    assert columns["colour"]["nulls"] == 1
    assert (columns["colour"]["unique"], columns["colour"]["top"]) == (2, "red")
    assert (columns["ok"]["dtype"], columns["ok"]["unique"], columns["ok"]["top"]) == (
        "bool",
        2,
        "True",
    )
    assert isinstance(columns["n"]["mean"], float)  # plain Python floats, not numpy scalars


def test_single_row_std_is_zero() -> None:
    stats = table_statistics(pd.DataFrame({"v": [7.5]}))
    assert stats["columns"]["v"]["std"] == 0.0
    assert json.dumps(stats, allow_nan=False)
