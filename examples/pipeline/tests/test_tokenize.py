import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from wordfreq import tokenize


class TokenizeTest(unittest.TestCase):
    def test_words_are_lower_case(self) -> None:
        self.assertEqual(tokenize("The Pipeline, the JOB."), ["the", "pipeline", "the", "job"])

    def test_apostrophes_stay_inside_words(self) -> None:
        self.assertEqual(tokenize("it's the runner's job"), ["it's", "the", "runner's", "job"])


if __name__ == "__main__":
    unittest.main()
