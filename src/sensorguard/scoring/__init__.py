"""Scoring readings with a fitted detector: the floor between the library and its users.

* :mod:`sensorguard.scoring.readings` scores a validated batch of
  :class:`~sensorguard.data.Readings` asset by asset into a per-reading table and alarm
  events (the CLI's ``score``/``evaluate``, the quality gate, the stored-window scoring).
* :mod:`sensorguard.scoring.stream` keeps the per-asset state of live scoring (filter
  state, gap filling, alarm tracker), shared by the predictor and the watch service.

Rules of this floor: it imports only detectors, data and the helpers below them; it
knows nothing of HTTP, MLflow or storage.
"""
