"""Write the template's sample dataset (template/data/) from scikit-learn's Breast Cancer data.

The Breast Cancer Wisconsin (Diagnostic) dataset is bundled with scikit-learn (originally from
the UCI Machine Learning Repository, CC BY 4.0). This script writes a stratified 80/20 split:

- train.csv: features plus the label ``diagnosis`` (``malignant`` / ``benign``)
- score.csv: the same feature columns without the label
- score_drifted.csv: score.csv with every texture column (mean_texture, texture_error,
  worst_texture) multiplied by ``DRIFT_FACTOR`` (1.5) and rounded to 5 significant digits: data
  whose texture drifted from the training data, for the prediction pipeline's drift check
- schema.yaml: the expected columns, checked by the validate-data step; it is written into the
  component package (template/components/{{package_name}}/) so the base image carries it

It is deterministic (seed 42), so rerunning it reproduces the files byte for byte.
Usage: python scripts/make_sample_data.py [--out template/data] [--schema-out DIR]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

SEED = 42
DRIFT_FACTOR = 1.5
DRIFTED_COLUMNS = ("mean_texture", "texture_error", "worst_texture")
TARGET = "diagnosis"
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "template" / "data"
DEFAULT_SCHEMA_OUT = DEFAULT_OUT.parent / "components" / "{{package_name}}"
SCHEMA_HEADER = (
    "# Expected columns of the training and scoring data; the validate-data step enforces it.\n"
    "# Written by scripts/make_sample_data.py in the vertexkit repository; when you replace the\n"
    "# sample data with your own, update this file to match.\n"
)


def load_frame() -> pd.DataFrame:
    """The dataset with snake_case feature names, 5 significant digits and a string label."""
    bunch = load_breast_cancer(as_frame=True)
    features = bunch.data.rename(columns=lambda name: name.replace(" ", "_"))
    features = features.map(lambda x: float(f"{x:.5g}"))
    # sklearn encodes 0 = malignant, 1 = benign.
    labels = bunch.target.map(dict(enumerate(bunch.target_names))).rename(TARGET)
    return pd.concat([features, labels], axis=1)


def drifted(score: pd.DataFrame) -> pd.DataFrame:
    """The scoring data with the texture columns scaled by DRIFT_FACTOR (still within schema)."""
    result = score.copy()
    for column in DRIFTED_COLUMNS:
        result[column] = (result[column] * DRIFT_FACTOR).map(lambda x: float(f"{x:.5g}"))
    return result


def nice_ceiling(value: float) -> float:
    """Round up to two significant digits (84.33 -> 85.0, 1.0362 -> 1.1)."""
    exponent = math.floor(math.log10(value)) - 1
    return round(math.ceil(value / 10**exponent) * 10**exponent, max(0, -exponent))


def schema_yaml(frame: pd.DataFrame) -> str:
    """The schema: string label, and non-negative floats up to 3x the observed maximum."""
    labels = ", ".join(sorted(frame[TARGET].unique(), reverse=True))
    lines = [f"target: {TARGET}", "columns:", f"  {TARGET}: {{dtype: str, allowed: [{labels}]}}"]
    for column in frame.columns.drop(TARGET):
        maximum = float(nice_ceiling(3 * frame[column].max()))
        lines.append(f"  {column}: {{dtype: float, min: 0.0, max: {maximum!r}}}")
    return SCHEMA_HEADER + "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument(
        "--schema-out", type=Path, default=DEFAULT_SCHEMA_OUT, help="directory of schema.yaml"
    )
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    frame = load_frame()
    if (frame.drop(columns=TARGET) < 0).any().any():
        raise SystemExit("a feature has negative values, but the schema sets min: 0.0")
    train, score = train_test_split(frame, test_size=0.2, stratify=frame[TARGET], random_state=SEED)
    train.to_csv(out / "train.csv", index=False, lineterminator="\n")
    score = score.drop(columns=TARGET)
    score.to_csv(out / "score.csv", index=False, lineterminator="\n")
    drifted(score).to_csv(out / "score_drifted.csv", index=False, lineterminator="\n")
    args.schema_out.mkdir(parents=True, exist_ok=True)
    (args.schema_out / "schema.yaml").write_text(schema_yaml(frame))
    print(f"wrote {len(train)} training rows and {len(score)} scoring rows to {out}")


if __name__ == "__main__":
    main()
