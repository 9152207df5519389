"""Forecasts the MPC can trust: the built-in forecaster, forecast inputs, and horizon assembly.

- :mod:`symtwin.forecasting.model`: ridge forecaster for demand / surplus heat (pure model code).
- :mod:`symtwin.forecasting.sources`: providers (MQTT topic, CSV file, the model, a config profile).
- :mod:`symtwin.forecasting.horizon`: validation/repair rules and the complete horizon with the source
  of every step.
"""

from symtwin.forecasting.horizon import (
    Alarm,
    AlarmKind,
    Forecast,
    ForecastHorizon,
    ForecastProvider,
    HorizonAssembler,
    HorizonIncomplete,
    ValidationRules,
)
from symtwin.forecasting.model import Calendar, Forecaster, ForecasterParams, History

__all__ = [
    "Alarm",
    "AlarmKind",
    "Calendar",
    "Forecast",
    "ForecastHorizon",
    "ForecastProvider",
    "Forecaster",
    "ForecasterParams",
    "History",
    "HorizonAssembler",
    "HorizonIncomplete",
    "ValidationRules",
]
