"""TER by sacrebleu, as an offline `evaluate` metric shipped with xlm-hf.

Load it with `evaluate.load(xlm_hf.evaluation.metric_path("ter"))`. evaluate copies this one
file into its module cache, so it stays self-contained: it imports evaluate, datasets and
sacrebleu, never xlm_hf (importing the package would register the models on every metric load).
That is why `_FEATURES` and `reference_streams` are repeated in each of bleu.py, chrf.py, ter.py:
a change to one goes to the three.
"""

import datasets
import evaluate
from sacrebleu.metrics import TER

_CITATION = """\
@inproceedings{snover-etal-2006-study,
    title = "A Study of Translation Edit Rate with Targeted Human Annotation",
    author = "Snover, Matthew and Dorr, Bonnie and Schwartz, Rich and Micciulla, Linnea and Makhoul, John",
    booktitle = "Proceedings of the 7th Conference of the Association for Machine Translation in the Americas",
    year = "2006",
    url = "https://aclanthology.org/2006.amta-papers.25",
    pages = "223--231",
}
"""

_DESCRIPTION = """\
Corpus-level TER (translation edit rate, lower is better) computed by sacrebleu's `TER` class,
with sacrebleu's signature so that the score can be reproduced and compared.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): one hypothesis per segment.
    references (list of str, or list of list of str): the reference of each prediction, or its
        references (a prediction may have fewer references than others).
    normalized, no_punct, asian_support, case_sensitive: the options of `sacrebleu.metrics.TER`.
Returns:
    score (float): TER, 0-100 and more, lower is better; signature (str): sacrebleu's signature;
    num_edits (int): edits summed over the corpus; ref_length (float): the average reference
    length summed over the corpus.
Examples:
    >>> ter = evaluate.load(metric_path("ter"))
    >>> ter.compute(predictions=["the cat sat on the mat"], references=["the cat sat on the mat"])["score"]
    0.0
"""

# One reference per prediction (a string), or several (a list of strings).
_STRING = datasets.Value("string", id="sequence")
_FEATURES = [
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


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Ter(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=_FEATURES,
            codebase_urls=["https://github.com/mjpost/sacrebleu"],
        )

    def _compute(
        self,
        predictions,
        references,
        normalized=False,
        no_punct=False,
        asian_support=False,
        case_sensitive=False,
    ):
        ter = TER(
            normalized=normalized,
            no_punct=no_punct,
            asian_support=asian_support,
            case_sensitive=case_sensitive,
        )
        result = ter.corpus_score(predictions, reference_streams(references))
        return {
            "score": result.score,
            "signature": str(ter.get_signature()),
            "num_edits": result.num_edits,
            "ref_length": result.ref_length,
        }
