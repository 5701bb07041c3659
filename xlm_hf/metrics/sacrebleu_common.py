"""What the sacrebleu metrics of xlm-hf (`bleu/`, `chrf/`, `ter/`) share: their input features, the conversion of
per-prediction references to sacrebleu's reference streams, and their `MetricInfo`.

evaluate copies a metric script and its single-dot imports into its module cache, so each metric folder links to
this one file (`<name>/sacrebleu_common.py -> ../sacrebleu_common.py`; a wheel carries a copy in each). It imports
evaluate, datasets and sacrebleu, never xlm_hf (importing the package would register the models on every metric
load).
"""

import datasets
import evaluate

# One reference per prediction (a string), or several (a list of strings).
_STRING = datasets.Value("string", id="sequence")
FEATURES = [
    datasets.Features({"predictions": _STRING, "references": references})
    for references in (datasets.Sequence(_STRING, id="references"), _STRING)
]


def reference_streams(references):
    """Per-prediction references -> sacrebleu's streams: stream i holds every prediction's i-th
    reference, None where a prediction has fewer than i + 1."""
    per_prediction = [[refs] if isinstance(refs, str) else list(refs) for refs in references]
    if any(not refs for refs in per_prediction):
        raise ValueError("every prediction needs at least one reference; got an empty list of references")
    n_refs = max(len(refs) for refs in per_prediction)
    return [[refs[i] if i < len(refs) else None for refs in per_prediction] for i in range(n_refs)]


def metric_info(description: str, citation: str, inputs_description: str) -> evaluate.MetricInfo:
    """The `MetricInfo` of a sacrebleu metric (its `_info`)."""
    return evaluate.MetricInfo(
        description=description,
        citation=citation,
        inputs_description=inputs_description,
        features=FEATURES,
        codebase_urls=["https://github.com/mjpost/sacrebleu"],
    )
