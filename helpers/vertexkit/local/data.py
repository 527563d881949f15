"""Table I/O (local CSV, GCS, BigQuery) and schema-based data validation for components."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

_VALID_FORMS = "path/to/file.csv, gs://bucket/object.csv or bq://project.dataset.table"
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_BOOLISH = {"true": True, "false": False, "1": True, "0": False}


# --------------------------------------------------------------------------- table I/O


def _invalid_uri(uri: str, reason: str = "unsupported table URI") -> ValueError:
    return ValueError(f"{reason} {uri!r}: expected {_VALID_FORMS}")


def _split_gcs(uri: str) -> tuple[str, str]:
    bucket, _, name = uri[len("gs://") :].partition("/")
    if not bucket or not name or name.endswith("/"):
        raise _invalid_uri(uri)
    return bucket, name


def _local_path(uri: str) -> Path:
    if uri.startswith("file://"):
        uri_path = uri[len("file://") :]
    elif _SCHEME.match(uri):
        raise _invalid_uri(uri)
    else:
        uri_path = uri
    if not uri_path:
        raise _invalid_uri(uri)
    return Path(uri_path)


def gcs_client() -> Any:
    from google.cloud import storage

    project = os.environ.get("GOOGLE_CLOUD_PROJECT")
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(project=project, credentials=AnonymousCredentials())
    return storage.Client(project=project)


def _read_bigquery(uri: str) -> pd.DataFrame:
    parts = uri[len("bq://") :].rsplit(".", 2)
    if len(parts) != 3 or not all(parts) or "/" in uri[len("bq://") :]:
        raise _invalid_uri(uri)
    from google.api_core.exceptions import NotFound
    from google.cloud import bigquery

    project = os.environ.get("GOOGLE_CLOUD_PROJECT") or parts[0]
    endpoint = os.environ.get("VERTEXKIT_BIGQUERY_ENDPOINT")
    if endpoint:
        from google.auth.credentials import AnonymousCredentials

        client = bigquery.Client(
            project=project,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": endpoint},
        )
    else:
        client = bigquery.Client(project=project)
    try:
        rows = client.list_rows(".".join(parts))
        records = [dict(row.items()) for row in rows]
    except NotFound as exc:
        raise FileNotFoundError(f"no such BigQuery table: {uri}") from exc
    return pd.DataFrame.from_records(records, columns=[field.name for field in rows.schema])


def read_table(uri: str) -> pd.DataFrame:
    """Read a table from a local/``file://`` CSV, a ``gs://`` CSV or a ``bq://`` table."""
    if uri.startswith("gs://"):
        from google.api_core.exceptions import NotFound

        bucket, name = _split_gcs(uri)
        try:
            data = gcs_client().bucket(bucket).blob(name).download_as_bytes()
        except NotFound as exc:
            raise FileNotFoundError(f"no such GCS object: {uri}") from exc
        return pd.read_csv(io.BytesIO(data))
    if uri.startswith("bq://"):
        return _read_bigquery(uri)
    path = _local_path(uri)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    return pd.read_csv(path)


def write_table(df: pd.DataFrame, uri: str) -> None:
    """Write ``df`` as CSV (without the index) to a local/``file://`` path or a ``gs://`` URI."""
    if uri.startswith("gs://"):
        bucket, name = _split_gcs(uri)
        blob = gcs_client().bucket(bucket).blob(name)
        blob.upload_from_string(df.to_csv(index=False), content_type="text/csv")
        return
    if uri.startswith("bq://"):
        raise _invalid_uri(uri, "writing to BigQuery is not supported:")
    path = _local_path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)


# --------------------------------------------------------------------------- schema


class SchemaError(ValueError):
    """A schema file is missing, unreadable or invalid."""


class ColumnSpec(BaseModel):
    """Expected type and value constraints of one column."""

    model_config = ConfigDict(extra="forbid")

    dtype: Literal["float", "int", "str", "bool"]
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    allowed: list[str | int | float | bool] | None = None

    @model_validator(mode="after")
    def _check_bounds(self) -> ColumnSpec:
        has_bounds = self.min is not None or self.max is not None
        if has_bounds and self.dtype not in ("float", "int"):
            raise ValueError(f"min/max only apply to float and int columns, not {self.dtype}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class TableSchema(BaseModel):
    """Columns of a table and, optionally, which one is the label (``target``)."""

    model_config = ConfigDict(extra="forbid")

    # Declared before ``target`` so the target validator can see the columns.
    columns: dict[str, ColumnSpec] = Field(min_length=1)
    target: str | None = None

    @field_validator("target")
    @classmethod
    def _target_is_a_column(cls, target: str | None, info: ValidationInfo) -> str | None:
        columns = info.data.get("columns")
        if target is not None and columns is not None and target not in columns:
            raise ValueError(f"target {target!r} is not one of the columns: {', '.join(columns)}")
        return target


def load_schema(path: str | Path) -> TableSchema:
    """Load and validate a YAML table schema; raise :class:`SchemaError` naming file and field."""
    try:
        content = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise SchemaError(f"{path}: cannot read schema file: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise SchemaError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(content, dict):
        raise SchemaError(
            f"{path}: expected a mapping with a 'columns' key, got {type(content).__name__}"
        )
    try:
        return TableSchema.model_validate(content)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            location = ".".join(str(part) for part in err["loc"]) or "<root>"
            # Show our own validator messages without pydantic's "Value error, " prefix.
            message = str(err["ctx"]["error"]) if err["type"] == "value_error" else err["msg"]
            lines.append(f"{path}: {location}: {message}")
        raise SchemaError("\n".join(lines)) from exc


# --------------------------------------------------------------------------- validation


class DataValidationError(ValueError):
    """A table does not match its schema."""


def _py(value: Any) -> Any:
    """Turn numpy scalars into plain Python values (for messages and JSON)."""
    return value.item() if isinstance(value, np.generic) else value


def _number(value: Any, dtype: str) -> int | float:
    """Show integral values of int columns without a trailing ``.0``."""
    return int(value) if dtype == "int" else float(value)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _to_bool(value: Any) -> bool | None:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.number)):
        return bool(value) if value in (0, 1) else None
    return _BOOLISH.get(str(value).strip().lower())


def _coerce(values: pd.Series, dtype: str) -> tuple[pd.Series, pd.Series]:
    """Split non-null ``values`` into (coerced valid values, original invalid values)."""
    if dtype == "str":
        return values.astype(str), values.iloc[:0]
    if dtype == "bool":
        coerced = values.map(_to_bool)
        bad = coerced.isna()
    elif pd.api.types.is_bool_dtype(values):
        coerced, bad = values, pd.Series(True, index=values.index)
    else:
        coerced = pd.to_numeric(values, errors="coerce")
        bad = coerced.isna()
        if dtype == "int":
            bad |= (coerced % 1).fillna(1) != 0
    return coerced[~bad], values[bad]


def _check_column(name: str, series: pd.Series, spec: ColumnSpec) -> list[str]:
    prefix = f"column {name!r}:"
    problems = []
    nulls = int(series.isna().sum())
    if nulls and not spec.nullable:
        problems.append(f"{prefix} null in {_count(nulls, 'row')} but the column is not nullable")
    values, bad = _coerce(series.dropna(), spec.dtype)
    if len(bad):
        problems.append(
            f"{prefix} {_count(len(bad), 'value')} not of type {spec.dtype}"
            f" (e.g. {_py(bad.iloc[0])!r})"
        )
    if spec.min is not None and (below := values[values < spec.min]).size:
        problems.append(
            f"{prefix} {_count(below.size, 'value')} below min {spec.min}"
            f" (worst: {_number(below.min(), spec.dtype)})"
        )
    if spec.max is not None and (above := values[values > spec.max]).size:
        problems.append(
            f"{prefix} {_count(above.size, 'value')} above max {spec.max}"
            f" (worst: {_number(above.max(), spec.dtype)})"
        )
    if spec.allowed is not None:
        allowed = [str(a) for a in spec.allowed] if spec.dtype == "str" else spec.allowed
        outside = values[~values.isin(allowed)]
        if outside.size:
            problems.append(
                f"{prefix} {_count(outside.size, 'value')} not in allowed {spec.allowed}"
                f" (e.g. {_py(outside.iloc[0])!r})"
            )
    return problems


def validate_table(
    df: pd.DataFrame, schema: TableSchema, *, require_target: bool = True
) -> list[str]:
    """Return human-readable violations of ``schema`` in ``df`` (empty when valid)."""
    problems = [] if len(df) else ["table has no rows"]
    for name in schema.columns:
        if name not in df.columns and (require_target or name != schema.target):
            problems.append(f"column {name!r}: missing from the table")
    problems += [
        f"column {name!r}: not in the schema" for name in df.columns if name not in schema.columns
    ]
    for name, spec in schema.columns.items():
        if name in df.columns:
            problems += _check_column(name, df[name], spec)
    return problems


def check_table(df: pd.DataFrame, schema: TableSchema, *, require_target: bool = True) -> None:
    """Raise :class:`DataValidationError` listing every violation of ``schema`` in ``df``."""
    problems = validate_table(df, schema, require_target=require_target)
    if problems:
        header = f"data validation failed: {_count(len(problems), 'problem')}"
        raise DataValidationError("\n".join([header, *problems]))


def _finite(value: Any) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def table_statistics(df: pd.DataFrame) -> dict[str, Any]:
    """Summarise ``df`` as JSON-serialisable per-column statistics (no NaN)."""
    columns: dict[str, dict[str, Any]] = {}
    for name in df.columns:
        series = df[name]
        stats: dict[str, Any] = {"dtype": str(series.dtype), "nulls": int(series.isna().sum())}
        values = series.dropna()
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            if len(values):
                stats["mean"] = _finite(values.mean())
                stats["std"] = _finite(values.std()) if len(values) > 1 else 0.0
                stats["min"] = _finite(values.min())
                stats["max"] = _finite(values.max())
            else:
                stats.update(dict.fromkeys(("mean", "std", "min", "max")))
        else:
            counts = values.astype(str).value_counts()
            stats["unique"] = int(values.nunique())
            stats["top"] = str(counts.index[0]) if len(counts) else None
        columns[str(name)] = stats
    return {"rows": len(df), "columns": columns}
