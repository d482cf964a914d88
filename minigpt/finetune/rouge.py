"""ROUGE-L: how much of a reference answer a generated answer contains, in order.

Lin (2004). Split both texts into words (lowercased, split on whitespace) and find their
longest common subsequence (LCS): the most words that appear in both, in the same order,
not necessarily next to each other. Then

    precision P = LCS / words in the response       (how much of the response is right)
    recall    R = LCS / words in the reference      (how much of the reference it covers)
    F1          = 2 P R / (P + R)                   (0 when LCS = 0)

"the cat sat on the mat" against "a cat sat on a mat": LCS "cat sat on mat" = 4 words,
P = R = 4/6, F1 = 0.667. Word order matters (unlike a bag of words), but a paraphrase
with other words scores low however right it is: ROUGE-L is a cheap automatic proxy, not
a judge of answers.

The LCS is the classic dynamic programme: lcs[i][j] = the LCS of the first i words of
one text and the first j of the other; a row at a time, O(len(a) * len(b)) steps.
"""

from __future__ import annotations


def words(text: str) -> list[str]:
    """The tokens ROUGE-L compares: lowercased, split on any whitespace."""
    return text.lower().split()


def lcs_length(a: list, b: list) -> int:
    """Length of the longest common subsequence of the sequences a and b."""
    previous = [0] * (len(b) + 1)  # lcs of a[:i-1] with b[:j], for every j
    for x in a:
        current = [0]
        for j, y in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(response: str, reference: str) -> dict[str, float]:
    """{"precision", "recall", "f1"} of a response against its reference (see the module
    docstring). Two empty texts agree perfectly (1.0); one empty text scores 0."""
    a, b = words(response), words(reference)
    if not a or not b:
        same = float(not a and not b)
        return {"precision": same, "recall": same, "f1": same}
    common = lcs_length(a, b)
    precision, recall = common / len(a), common / len(b)
    f1 = 0.0 if common == 0 else 2 * precision * recall / (precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1}


def mean_rouge_l_f1(responses, references) -> float:
    """The mean ROUGE-L F1 over pairs of responses and references (equal counts)."""
    responses, references = list(responses), list(references)
    if len(responses) != len(references) or not responses:
        raise ValueError(f"need as many responses as references (at least one), got "
                         f"{len(responses)} and {len(references)}")
    return sum(rouge_l(r, ref)["f1"] for r, ref in zip(responses, references)) / len(responses)
