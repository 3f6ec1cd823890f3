from typing import Dict, List, Optional, Sequence, TypedDict, Union

import numpy as np
import numpy.typing as npt

__version__: str

class DescribedLabel(TypedDict):
    label: str
    description: str

Label = Union[str, DescribedLabel]

class LabelScore(TypedDict):
    label: str
    score: float
    predicted: bool

class Prediction(TypedDict):
    text: str
    labels: List[LabelScore]
    model: str

class Classifier:
    """A zero-shot classifier: the built-in model (``model=None``) or a model directory.

    ``device``: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``. ``precision``: ``"f32"``,
    ``"bf16"`` or ``"int8"`` (CPU only), as the CLI's ``--f32``/``--bf16``/``--quantize``;
    ``None`` is the CLI's default for this CPU (bf16 where the CPU has AMX, f32 elsewhere).
    Bad input raises ``ValueError`` with the CLI's message. Thread-safe; the GIL is released
    while the encoder runs.
    """

    def __init__(
        self,
        model: Optional[str] = None,
        device: str = "auto",
        precision: Optional[str] = None,
    ) -> None: ...
    @property
    def model(self) -> str:
        """The model's name, as ``gliznet predict --format json`` reports it."""
    @property
    def default_threshold(self) -> float:
        """The multi-label threshold used when none is given."""
    def predict(
        self,
        texts: Sequence[str],
        labels: Union[Sequence[Label], Sequence[Sequence[Label]]],
        multi_label: bool = True,
        threshold: Optional[float] = None,
        batch_size: int = 16,
    ) -> List[Prediction]:
        """Scores each text against its labels: one list for all texts, or one list per text.

        Multi-label: a sigmoid per label, ``predicted`` at or above ``threshold`` (default: the
        model's). Single-label (``multi_label=False``): a softmax over each text's labels, the
        top one predicted. The records are those of ``gliznet predict --format json``.
        """
    def scores(
        self,
        texts: Sequence[str],
        labels: Sequence[Label],
        batch_size: int = 16,
    ) -> npt.NDArray[np.float32]:
        """The multi-label scores as a float32 array of shape ``[len(texts), len(labels)]``."""
