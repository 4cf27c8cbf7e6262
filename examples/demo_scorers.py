"""A custom code scorer, written as for MLflow 3 (only the import differs). `spanlake jobs run
scorers` imports it in its own process: custom code runs where the job runs."""

from spanlake.jobs.feedback import Feedback
from spanlake.jobs.scorer import scorer


@scorer
def concise_answer(outputs) -> Feedback:
    words = len(str(outputs or "").split())
    return Feedback(value=words <= 60, rationale=f"{words} words (60 at most)")
