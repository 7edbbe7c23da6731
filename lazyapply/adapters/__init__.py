"""One adapter module per backend; ``lazyapply._detect`` holds the table of rows.

Importing this package imports no backend: each adapter imports its library only
when it is instantiated, which happens only for a library already in ``sys.modules``.
"""
