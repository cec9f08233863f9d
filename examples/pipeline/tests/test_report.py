import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from wordfreq import count, report, tokenize


class ReportTest(unittest.TestCase):
    def test_most_frequent_first_ties_alphabetical(self) -> None:
        counts = count(tokenize("b a b c a b"))
        self.assertEqual(report(counts, 2), ["b 3", "a 2"])

    def test_stopwords_are_left_out(self) -> None:
        counts = count(tokenize("the job and the pipeline"), frozenset({"the", "and"}))
        self.assertEqual(report(counts, 5), ["job 1", "pipeline 1"])


if __name__ == "__main__":
    unittest.main()
