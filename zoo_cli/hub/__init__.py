"""The hub: getting a registry checkpoint into the local cache (``ZOO_HOME``) and keeping it sound there — download,
verify, unpack, record, verify again, remove. Modules in flow order: ``content`` (what a file's bytes are: gzip, a
web page, another format; sha256), ``cache`` (the cache's layout and what is installed), ``disk`` (free space,
write failures), ``claims`` (partial downloads owned by a process, and whether it runs), ``session`` (HTTP
session, timeouts and retry policy), ``attempt`` (one HTTP request of a transfer and its body), ``transfer``
(``fetch_file``: a whole resumable, retried transfer), ``archive`` (safe unpacking of a ``.tar.gz``), ``locks``
(one lock per checkpoint), ``verify`` (hash pins, install checks, ``zoo verify``), ``install`` (one checkpoint:
download → verify → unpack → record), ``batch`` (several at once, ``zoo download``), ``removal`` (``zoo rm``,
``zoo cache`` and ``cache prune``)."""
