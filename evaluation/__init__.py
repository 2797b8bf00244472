"""Closed-loop evaluation in LIBERO (``closed_loop``), statistics (``stats``), results files
(``results``) and the report (``report``, ``plots``)."""
