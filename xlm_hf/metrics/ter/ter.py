"""TER by sacrebleu, as an offline `evaluate` metric shipped with xlm-hf.

Load it with `evaluate.load(xlm_hf.evaluation.metric_path("ter"))`. What the three
sacrebleu metrics share (features, reference streams, `MetricInfo`) is in `sacrebleu_common.py`.
"""

import evaluate
from sacrebleu.metrics import TER

from .sacrebleu_common import metric_info, reference_streams

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


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Ter(evaluate.Metric):
    def _info(self):
        return metric_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION)

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
