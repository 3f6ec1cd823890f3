"""gliznet: zero-shot text classification in Rust.

    >>> import gliznet
    >>> classifier = gliznet.Classifier()          # the built-in model
    >>> classifier.predict(["The central bank raised interest rates again"], ["economy", "sports", "cooking"])
    [{'text': '...', 'labels': [{'label': 'economy', 'score': 0.95..., 'predicted': True}, ...], 'model': '...'}]

A label is a name or ``{"label": name, "description": text}``; the model reads the
description with the name and the result names the label. The encoder runs without the GIL,
and one Classifier may be shared by many threads.
"""

from ._native import Classifier, __version__

__all__ = ["Classifier", "__version__"]
