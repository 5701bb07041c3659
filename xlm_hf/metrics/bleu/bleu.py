"""Corpus BLEU by sacrebleu, as an offline `evaluate` metric shipped with xlm-hf.

Load it with `evaluate.load(xlm_hf.evaluation.metric_path("bleu"))`. evaluate copies this one
file into its module cache, so it stays self-contained: it imports evaluate, datasets and
sacrebleu, never xlm_hf (importing the package would register the models on every metric load).
That is why `_FEATURES` and `reference_streams` are repeated in each of bleu.py, chrf.py, ter.py:
a change to one goes to the three.
"""

import datasets
import evaluate
from sacrebleu.metrics import BLEU

_CITATION = """\
@inproceedings{post-2018-call,
    title = "A Call for Clarity in Reporting {BLEU} Scores",
    author = "Post, Matt",
    booktitle = "Proceedings of the Third Conference on Machine Translation: Research Papers",
    year = "2018",
    url = "https://www.aclweb.org/anthology/W18-6319",
    pages = "186--191",
}
"""

_DESCRIPTION = """\
Corpus-level BLEU computed by sacrebleu's `BLEU` class, with sacrebleu's signature so that the
score can be reproduced and compared.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): one hypothesis per segment.
    references (list of str, or list of list of str): the reference of each prediction, or its
        references (a prediction may have fewer references than others: sacrebleu then reports
        `nrefs:var`).
    lowercase, force, tokenize, smooth_method, smooth_value, max_ngram_order, effective_order,
    trg_lang: the options of `sacrebleu.metrics.BLEU`; `tokenize=None` picks sacrebleu's
        default, '13a', or the tokenizer of `trg_lang` for 'zh', 'ja' and 'ko'.
Returns:
    score (float): BLEU, 0-100; signature (str): sacrebleu's signature; counts, totals (list of
    int): matching and total n-grams; precisions (list of float); bp (float): brevity penalty;
    sys_len, ref_len (int).
Examples:
    >>> bleu = evaluate.load(metric_path("bleu"))
    >>> bleu.compute(predictions=["the cat sat on the mat"], references=["the cat sat on the mat"])["score"]
    100.00000000000004
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
class Bleu(evaluate.Metric):
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
        lowercase=False,
        force=False,
        tokenize=None,
        smooth_method="exp",
        smooth_value=None,
        max_ngram_order=4,
        effective_order=False,
        trg_lang="",
    ):
        bleu = BLEU(
            lowercase=lowercase,
            force=force,
            tokenize=tokenize,
            smooth_method=smooth_method,
            smooth_value=smooth_value,
            max_ngram_order=max_ngram_order,
            effective_order=effective_order,
            trg_lang=trg_lang,
        )
        result = bleu.corpus_score(predictions, reference_streams(references))
        return {
            "score": result.score,
            "signature": str(bleu.get_signature()),
            "counts": result.counts,
            "totals": result.totals,
            "precisions": result.precisions,
            "bp": result.bp,
            "sys_len": result.sys_len,
            "ref_len": result.ref_len,
        }
