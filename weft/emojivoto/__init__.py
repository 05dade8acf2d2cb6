"""Emojivoto, Linkerd's classic demo application, in Python.

Four programs make a small microservice app that a mesh can be shown on::

    vote-bot --HTTP--> web --gRPC--> emoji-svc   (EmojiService: ListAll, FindByShortcode)
                           --gRPC--> voting-svc  (VotingService: one Vote<Name> per emoji, Results)

* ``python -m weft.emojivoto.emoji_svc`` serves the fixed list of 99 emoji (:mod:`.emoji`).
* ``python -m weft.emojivoto.voting_svc`` counts votes in memory; by default every vote for
  ``:doughnut:`` fails (``FAILURE_RATE``), and ``ARTIFICIAL_DELAY`` slows every vote down, so
  the mesh has errors and latency to show.
* ``python -m weft.emojivoto.web`` serves the HTML pages and the JSON API (``/api/list``,
  ``/api/vote``, ``/api/leaderboard``) on top of the two gRPC services.
* ``python -m weft.emojivoto.vote_bot`` votes through web's API at ``REQUEST_RATE`` per second.

Each is configured with environment variables (see the modules), logs to stderr, and exits 0
on SIGTERM or SIGINT. The service definitions are ``emoji.proto`` and ``voting.proto``; their
Python code is generated at build time, like :mod:`weft.api`'s.
"""
