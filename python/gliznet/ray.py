"""Batch classification on Ray Data: one classifier per actor, pyarrow batches in and out.

    import ray, gliznet.ray
    ds = ray.data.read_parquet("s3://bucket/texts/")
    ds = ds.map_batches(
        gliznet.ray.Predictor,
        fn_constructor_kwargs={"labels": ["economy", "sports", "cooking"]},
        batch_format="pyarrow",
        batch_size=1024,
        concurrency=4,
    )
    ds.write_parquet("s3://bucket/scored/")

Each output batch is the input batch with two columns added, as ``gliznet predict --output
FILE.parquet`` adds them: ``scores`` (list<float32>, in the order of the row's labels) and
``predicted`` (list<string>).
"""

from typing import TYPE_CHECKING, Any, List, Optional, Sequence

from ._native import Classifier

if TYPE_CHECKING:
    import pyarrow

SCORES_COLUMN = "scores"
PREDICTED_COLUMN = "predicted"


class Predictor:
    """A callable for ``Dataset.map_batches(Predictor, fn_constructor_kwargs={...},
    batch_format="pyarrow")``.

    Give ``labels`` (one list for every row; a label is a name or ``{"label": ...,
    "description": ...}``) or ``labels_column`` (a column holding each row's list of label
    names). ``text_column`` names the texts. ``model``, ``device`` and ``precision`` are
    those of :class:`gliznet.Classifier`; ``threshold`` and ``multi_label`` those of
    :meth:`gliznet.Classifier.predict`.
    """

    def __init__(
        self,
        *,
        labels: Optional[Sequence[Any]] = None,
        labels_column: Optional[str] = None,
        text_column: str = "text",
        model: Optional[str] = None,
        device: str = "auto",
        precision: Optional[str] = None,
        threshold: Optional[float] = None,
        multi_label: bool = True,
        batch_size: int = 16,
    ) -> None:
        if (labels is None) == (labels_column is None):
            raise ValueError("give exactly one of labels= and labels_column=")
        self.labels: Optional[List[Any]] = list(labels) if labels is not None else None
        self.labels_column = labels_column
        self.text_column = text_column
        self.threshold = threshold
        self.multi_label = multi_label
        self.batch_size = batch_size
        self.classifier = Classifier(model=model, device=device, precision=precision)

    def __call__(self, batch: "pyarrow.Table") -> "pyarrow.Table":
        import pyarrow as pa

        for added in (SCORES_COLUMN, PREDICTED_COLUMN):
            if added in batch.column_names:
                raise ValueError(f'the batch already has a column "{added}", which the output adds')
        texts = _column(batch, self.text_column, "text_column").to_pylist()
        for row, text in enumerate(texts):
            if text is None:
                raise ValueError(f'row {row} of the batch, column "{self.text_column}": the text is null')
        if self.labels is not None:
            labels: Any = self.labels
        else:
            labels = _column(batch, self.labels_column, "labels_column").to_pylist()
            for row, row_labels in enumerate(labels):
                if row_labels is None:
                    raise ValueError(
                        f'row {row} of the batch, column "{self.labels_column}": the list is null'
                    )
        if not texts:
            records = []
        else:
            records = self.classifier.predict(
                texts,
                labels,
                multi_label=self.multi_label,
                threshold=self.threshold,
                batch_size=self.batch_size,
            )
        scores = [[label["score"] for label in r["labels"]] for r in records]
        predicted = [[label["label"] for label in r["labels"] if label["predicted"]] for r in records]
        batch = batch.append_column(
            pa.field(SCORES_COLUMN, pa.list_(pa.float32()), nullable=False),
            pa.array(scores, type=pa.list_(pa.float32())),
        )
        return batch.append_column(
            pa.field(PREDICTED_COLUMN, pa.list_(pa.string()), nullable=False),
            pa.array(predicted, type=pa.list_(pa.string())),
        )


def _column(batch: "pyarrow.Table", name: Optional[str], argument: str) -> "pyarrow.ChunkedArray":
    if name not in batch.column_names:
        raise ValueError(
            f'no column "{name}" ({argument}); the batch has: {", ".join(batch.column_names)}'
        )
    return batch.column(name)
