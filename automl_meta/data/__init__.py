"""Data: read a table (:mod:`.io`), type its columns (:mod:`.schema`), validate the target
and infer the task (:mod:`.dataset`)."""

from automl_meta.data.dataset import (
    TASK_KINDS,
    TASKS,
    Dataset,
    closest_column,
    infer_task,
    load_dataset,
    prepare_dataset,
    regression_target,
    task_kind,
)
from automl_meta.data.io import Deadline, file_sha256, max_input_bytes, read_arff_text, read_table
from automl_meta.data.schema import (
    DATETIME_PARTS,
    FEATURE_KINDS,
    Column,
    Schema,
    coerce_features,
    infer_schema,
)

__all__ = ["DATETIME_PARTS", "FEATURE_KINDS", "TASKS", "TASK_KINDS", "Column", "Dataset",
           "Deadline", "Schema", "closest_column", "coerce_features", "file_sha256",
           "infer_schema", "infer_task", "load_dataset", "max_input_bytes", "prepare_dataset",
           "read_arff_text", "read_table", "regression_target", "task_kind"]
