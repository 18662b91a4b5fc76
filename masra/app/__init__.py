"""``masra app``: a small web demo (Gradio) of raw-video grounding with a trained checkpoint.

- :mod:`masra.app.predict`: the computation, no Gradio (checkpoint + video + query -> windows,
  table rows, timeline PNG); tested without a browser.
- :mod:`masra.app.ui`: the page (needs the ``app`` extra: ``pip install 'masra[app]'``).
"""
