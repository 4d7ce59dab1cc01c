"""Strategies ("bots"): domain code of trading-engine, free of FastAPI and Kafka but for ``routes.py``.

A bot is a strategy instance on one symbol and account (``model.Bot``) with a lifecycle
(``lifecycle``), a memory that survives restarts (``memory``), built-in strategies (``strategies``),
position sizing (``sizing``), stops held by the engine (``stops``), the auto mode that creates bots
from signals (``auto``), its tables (``store``) and its API (``routes``). ``brain.BotBrain`` puts
them together for one bot: inputs in, intents out, through the ``intents.IntentSink`` the engine gives.
"""
