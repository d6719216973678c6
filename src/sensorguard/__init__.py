"""SensorGuard: learn normal operation of a machine's sensors, flag failures, blame sensors."""

__version__ = "0.1.0"
