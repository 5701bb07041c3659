"""Corpus BLEU by sacrebleu, as an offline `evaluate` metric shipped with xlm-hf.

Load it with `evaluate.load(xlm_hf.evaluation.metric_path("bleu"))`. What the three
sacrebleu metrics share (features, reference streams, `MetricInfo`) is in `sacrebleu_common.py`.
"""

import evaluate
from sacrebleu.metrics import BLEU

from .sacrebleu_common import metric_info, reference_streams

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


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Bleu(evaluate.Metric):
    def _info(self):
        return metric_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION)

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
