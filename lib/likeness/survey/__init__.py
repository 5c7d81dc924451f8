"""Surveys of the public's recognition: open recognition and lineup tests built from a case.

* :mod:`likeness.survey.design`: stimuli, fair lineups and ``design.json`` from a run folder.
* :mod:`likeness.survey.page`: the self-contained survey page (one HTML file).
* :mod:`likeness.survey.responses`: the response format, its validation and the SQLite store.
* :mod:`likeness.survey.serve`: the collector (HTTP) that serves the page and stores answers.
* :mod:`likeness.survey.analyze`: rates, intervals, lineup fairness, exclusions, figures.
* :mod:`likeness.survey.report_section`: the report's survey section from the results.
"""

from likeness.errors import LikenessError


class SurveyError(LikenessError):
    """A survey design, response or responses file that is missing, malformed or inconsistent."""
