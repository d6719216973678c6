"""Live monitoring: readings stream in over MQTT, every asset is scored as it arrives,
alarms open and close on their own and reach people.

* :mod:`~sensorguard.live.mqtt`: broker URL, topics, clients with persistent sessions;
* :mod:`~sensorguard.live.ingest`: MQTT readings into the store (dead letters kept);
* :mod:`~sensorguard.live.notify`: the notification outbox, webhooks and MQTT alarms;
* :mod:`~sensorguard.live.replay`: publish a readings file as a live stream;
* :mod:`~sensorguard.live.watch`: the watch loop (scoring, alarms, checkpoints, leases).

A layer beside ``serving``: it imports the library (store, scoring, registry, data) and
never the CLI, ``serving`` or an entry-point framework.
"""
