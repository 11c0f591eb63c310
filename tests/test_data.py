"""Reading, typing and task inference."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from automl_meta.data import (
    infer_task,
    load_dataset,
    prepare_dataset,
    read_arff_text,
    read_table,
)
from automl_meta.errors import UsageError

ARFF = """% a comment
@relation weather
@attribute outlook {sunny, overcast, rainy}
@attribute temperature numeric
@attribute windy {TRUE, FALSE}
@attribute play {yes, no}
@data
sunny,85,FALSE,no
sunny,80,TRUE,no
overcast,83,FALSE,yes
rainy,?,FALSE,yes
rainy,68,FALSE,yes
rainy,65,TRUE,no
overcast,64,TRUE,yes
sunny,72,FALSE,no
sunny,69,FALSE,yes
rainy,75,FALSE,yes
sunny,75,TRUE,yes
overcast,72,TRUE,yes
"""


def test_reads_csv_tsv_parquet_and_gzip(tmp_path, mixed_frame):
    mixed_frame.to_csv(tmp_path / "a.csv", index=False)
    mixed_frame.to_csv(tmp_path / "a.tsv", sep="\t", index=False)
    mixed_frame.to_csv(tmp_path / "semi.csv", sep=";", index=False)
    mixed_frame.to_parquet(tmp_path / "a.parquet")
    with gzip.open(tmp_path / "a.csv.gz", "wt") as fh:
        mixed_frame.to_csv(fh, index=False)
    for name in ("a.csv", "a.tsv", "semi.csv", "a.parquet", "a.csv.gz"):
        df = read_table(tmp_path / name)
        assert list(df.columns) == list(mixed_frame.columns), name
        assert len(df) == len(mixed_frame), name


def test_reads_arff_with_nominal_categories(tmp_path):
    (tmp_path / "w.arff").write_text(ARFF)
    with gzip.open(tmp_path / "w.arff.gz", "wt") as fh:
        fh.write(ARFF)
    for name in ("w.arff", "w.arff.gz"):
        df = read_table(tmp_path / name)
        assert df.shape == (12, 4)
        assert isinstance(df["outlook"].dtype, pd.CategoricalDtype)
        assert list(df["outlook"].cat.categories) == ["sunny", "overcast", "rainy"]
        assert np.isnan(df.loc[3, "temperature"])
    ds = load_dataset(tmp_path / "w.arff", None)  # last attribute is the target
    assert ds.target == "play" and ds.task == "binary"


def test_feature_typing_and_drops(mixed_frame):
    ds = prepare_dataset(mixed_frame, "label")
    kinds = ds.schema.kinds()
    assert kinds == {"num": "numeric", "num_missing": "numeric", "cat": "categorical",
                     "flag": "boolean", "when": "datetime"}
    assert "customer_id" in ds.schema.dropped and "ID" in ds.schema.dropped["customer_id"]
    assert ds.schema.dropped["const"] == "constant"
    assert ds.task == "binary" and ds.classes == ["no", "yes"]


def test_text_column_dropped_and_mixed_types_coerced():
    rng = np.random.default_rng(1)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]
    text = [" ".join(rng.choice(words, size=8)) + f" note {i}" for i in range(60)]
    mixed = [str(v) for v in rng.integers(0, 100, size=60)]
    mixed[3] = "abc"
    df = pd.DataFrame({"text": text, "mixed": mixed, "x": rng.normal(size=60),
                       "y": rng.normal(size=60)})
    ds = prepare_dataset(df, "y")
    assert "text" in ds.schema.dropped
    assert ds.schema.kinds()["mixed"] == "numeric"
    assert np.isnan(ds.X.loc[3, "mixed"])


def test_missing_target_rows_dropped_and_counted():
    df = pd.DataFrame({"x": np.arange(30.0), "y": [1.5, np.nan, 2.5] * 10})
    ds = prepare_dataset(df, "y")
    assert ds.n_dropped_missing_target == 10 and ds.n_rows == 20
    assert any("missing target" in n for n in ds.notes)


def test_as_read_keeps_every_column_on_the_rows_with_a_target(mixed_frame):
    ds = prepare_dataset(mixed_frame, "label")
    X, y = ds.as_read()
    # every feature column as read, dropped and datetime ones included, unconverted
    assert list(X.columns) == [c for c in mixed_frame.columns if c != "label"]
    assert X["when"].dtype == mixed_frame["when"].dtype and (X["const"] == 7).all()
    assert y is ds.y and X.attrs == {}
    # no row lacks a target: copy-on-write shares the columns with the table read
    assert np.shares_memory(X["num"].to_numpy(), mixed_frame["num"].to_numpy())

    df = pd.DataFrame({"x": np.arange(30.0), "const": 1.0, "y": [1.5, np.nan, 2.5] * 10})
    ds = prepare_dataset(df, "y")
    X, y = ds.as_read()
    assert list(ds.X.columns) == ["x"] and list(X.columns) == ["x", "const"]
    assert len(X) == len(y) == 20 and list(X.index) == list(range(20))
    assert X["x"].tolist() == df.loc[df["y"].notna(), "x"].tolist()


def test_as_read_target_keeps_its_declared_values():
    arff = ("@relation t\n@attribute x numeric\n@attribute class {a, b, c}\n@data\n"
            + "".join(f"{i},{'ab'[i % 2]}\n" for i in range(20)))
    ds = prepare_dataset(read_arff_text(arff), "class")
    assert ds.task == "binary" and ds.classes == ["a", "b"]
    assert ds.target_values == ["a", "b", "c"]
    _, y = ds.as_read()
    assert list(y.cat.categories) == ["a", "b", "c"] and y.astype(str).tolist() == ds.y.tolist()
    plain = prepare_dataset(pd.DataFrame({"x": range(20), "y": ["a", "b"] * 10}), "y")
    assert plain.target_values is None and plain.as_read()[1] is plain.y


@pytest.mark.parametrize("values,expected", [
    (["a", "b"] * 10, "binary"),
    ([0, 1] * 10, "binary"),
    (["a", "b", "c"] * 10, "multiclass"),
    ([1, 2, 3, 4] * 10, "multiclass"),
    (list(np.linspace(0, 1, 30)), "regression"),
    (list(range(30)), "regression"),
])
def test_infer_task(values, expected):
    assert infer_task(pd.Series(values)) == expected


def test_task_override():
    df = pd.DataFrame({"x": np.arange(40.0), "y": [1, 2, 3, 4] * 10})
    assert prepare_dataset(df, "y", "regression").task == "regression"
    assert prepare_dataset(df, "y", "classification").task == "multiclass"


@pytest.mark.parametrize("content,message", [
    ("", "empty"),
    ("a,b,c\n", "no data rows"),
])
def test_empty_inputs(tmp_path, content, message):
    p = tmp_path / "bad.csv"
    p.write_text(content)
    with pytest.raises(UsageError, match=message):
        read_table(p)


def test_binary_garbage_and_missing_file(tmp_path):
    p = tmp_path / "garbage.csv"
    p.write_bytes(bytes(range(256)) * 10)
    with pytest.raises(UsageError, match="binary"):
        read_table(p)
    with pytest.raises(UsageError, match="no such file"):
        read_table(tmp_path / "nope.csv")


def test_target_errors(mixed_frame):
    with pytest.raises(UsageError, match="did you mean 'label'"):
        prepare_dataset(mixed_frame, "lable")
    df = mixed_frame.assign(label=np.nan)
    with pytest.raises(UsageError, match="entirely missing"):
        prepare_dataset(df, "label")
    with pytest.raises(UsageError, match="single class"):
        prepare_dataset(mixed_frame.assign(label="yes"), "label")
    with pytest.raises(UsageError, match="at least 10"):
        prepare_dataset(mixed_frame.head(6), "label")


def test_latin1_file(tmp_path):
    p = tmp_path / "latin.csv"
    p.write_bytes(b"ville,prix\n" + "".join(
        f"{'Orléans' if i % 2 else 'Besançon'},{i}\n" for i in range(20)).encode("latin-1"))
    df = read_table(p)
    assert set(df["ville"]) == {"Orléans", "Besançon"}
