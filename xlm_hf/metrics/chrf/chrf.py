"""chrF / chrF++ by sacrebleu, as an offline `evaluate` metric shipped with xlm-hf.

Load it with `evaluate.load(xlm_hf.evaluation.metric_path("chrf"))`. What the three
sacrebleu metrics share (features, reference streams, `MetricInfo`) is in `sacrebleu_common.py`.
"""

import evaluate
from sacrebleu.metrics import CHRF

from .sacrebleu_common import metric_info, reference_streams

_CITATION = """\
@inproceedings{popovic-2015-chrf,
    title = "chr{F}: character n-gram {F}-score for automatic {MT} evaluation",
    author = "Popovi{\\'c}, Maja",
    booktitle = "Proceedings of the Tenth Workshop on Statistical Machine Translation",
    year = "2015",
    url = "https://aclanthology.org/W15-3049",
    pages = "392--395",
}
"""

_DESCRIPTION = """\
Corpus-level chrF computed by sacrebleu's `CHRF` class (chrF++ with `word_order=2`), with
sacrebleu's signature so that the score can be reproduced and compared.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): one hypothesis per segment.
    references (list of str, or list of list of str): the reference of each prediction, or its
        references (a prediction may have fewer references than others).
    char_order, word_order, beta, lowercase, whitespace, eps_smoothing: the options of
        `sacrebleu.metrics.CHRF`; `word_order=2` gives chrF++.
Returns:
    score (float): chrF, 0-100; signature (str): sacrebleu's signature; char_order, word_order,
    beta (int): the settings used.
Examples:
    >>> chrf = evaluate.load(metric_path("chrf"))
    >>> chrf.compute(predictions=["the cat sat on the mat"], references=["the cat sat on the mat"])["score"]
    100.0
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Chrf(evaluate.Metric):
    def _info(self):
        return metric_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION)

    def _compute(
        self,
        predictions,
        references,
        char_order=CHRF.CHAR_ORDER,
        word_order=CHRF.WORD_ORDER,
        beta=CHRF.BETA,
        lowercase=False,
        whitespace=False,
        eps_smoothing=False,
    ):
        chrf = CHRF(
            char_order=char_order,
            word_order=word_order,
            beta=beta,
            lowercase=lowercase,
            whitespace=whitespace,
            eps_smoothing=eps_smoothing,
        )
        result = chrf.corpus_score(predictions, reference_streams(references))
        return {
            "score": result.score,
            "signature": str(chrf.get_signature()),
            "char_order": result.char_order,
            "word_order": result.word_order,
            "beta": result.beta,
        }
