"""scikit-learn models saved with joblib, behind the :class:`ModelAdapter` interface.

Classifiers answer ``label`` (INT64, one per row: the predicted class, or its
index in ``classes_`` when the classes are not integers) and, when they have
``predict_proba``, ``probabilities`` (FP64, one column per class, in
``classes_`` order). Regressors answer ``prediction`` (FP64).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np
import numpy.typing as npt

from aimp_inference.adapter import Arrays, TensorSpec

INPUT = "input"
LABEL = "label"
PROBABILITIES = "probabilities"
PREDICTION = "prediction"

_F64 = np.dtype(np.float64)
_I64 = np.dtype(np.int64)


class SklearnAdapter:
    """Serves one fitted scikit-learn estimator (or pipeline)."""

    def __init__(self, model: Any) -> None:
        if not callable(getattr(model, "predict", None)):
            raise ValueError(
                f"{type(model).__name__} has no predict(); save a fitted scikit-learn estimator"
            )
        n_features = getattr(model, "n_features_in_", None)
        if not isinstance(n_features, int | np.integer) or n_features < 1:
            raise ValueError(
                f"{type(model).__name__} has no n_features_in_; fit it before saving it"
            )
        self.model = model
        self.n_features = int(n_features)
        classes = getattr(model, "classes_", None)
        self.classes: npt.NDArray[Any] | None = None if classes is None else np.asarray(classes)
        self.has_proba = self.classes is not None and callable(
            getattr(model, "predict_proba", None)
        )

    @classmethod
    def load(cls, path: Path) -> SklearnAdapter:
        """Load a joblib file (only load files you trust: joblib runs pickled code)."""
        return cls(joblib.load(path))

    @property
    def inputs(self) -> list[TensorSpec]:
        return [TensorSpec(INPUT, _F64, (self.n_features,))]

    @property
    def outputs(self) -> list[TensorSpec]:
        if self.classes is None:
            n_outputs = int(getattr(self.model, "n_outputs_", 1))
            return [TensorSpec(PREDICTION, _F64, (n_outputs,))]
        specs = [TensorSpec(LABEL, _I64, (1,))]
        if self.has_proba:
            specs.append(TensorSpec(PROBABILITIES, _F64, (len(self.classes),)))
        return specs

    @property
    def batched(self) -> bool:
        return True

    def infer(self, inputs: Arrays) -> dict[str, npt.NDArray[np.generic]]:
        rows = np.asarray(inputs[INPUT], dtype=np.float64).reshape(-1, self.n_features)
        if self.classes is None:
            pred = np.asarray(self.model.predict(rows), dtype=np.float64)
            return {PREDICTION: pred.reshape(len(rows), -1)}
        out: dict[str, npt.NDArray[np.generic]] = {LABEL: self._labels(rows)}
        if self.has_proba:
            proba = np.asarray(self.model.predict_proba(rows), dtype=np.float64)
            out[PROBABILITIES] = proba
        return out

    def _labels(self, rows: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        pred = np.asarray(self.model.predict(rows))
        assert self.classes is not None
        if np.issubdtype(self.classes.dtype, np.integer):
            labels = pred.astype(np.int64)
        else:
            # classes_ is sorted by scikit-learn, so the index is a binary search away.
            labels = np.searchsorted(self.classes, pred).astype(np.int64)
        return labels.reshape(-1, 1)
