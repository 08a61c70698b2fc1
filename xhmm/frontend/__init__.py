"""The front end: resolve a Dataset's inputs, run the one driver, build the result.

The accessors (``ds.hmm``, ``da.hmm``) forward to the functions of
:mod:`~xhmm.frontend.api`, which run :func:`~xhmm.frontend.driver.run_job`;
:mod:`~xhmm.frontend.inputs`, :mod:`~xhmm.frontend.sequences` and
:mod:`~xhmm.frontend.missing` check what goes in, and
:mod:`~xhmm.frontend.results`, :mod:`~xhmm.frontend.most_likely`,
:mod:`~xhmm.frontend.lazy` and :mod:`~xhmm.frontend.coords` build what comes
out.
"""
