"""The visual Turing test: study files, participant sessions and the local web page (``colorkit turing``).

:mod:`~colorkit.front.turing.study` makes a study (the photos, each model's colorizations, the
seeded orders) and reads its results (fooling rates with 95% intervals);
:mod:`~colorkit.front.turing.store` keeps the participant sessions on disk;
:mod:`~colorkit.front.turing.server` serves the page and its small JSON API.
"""
