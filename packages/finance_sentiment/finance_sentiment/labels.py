"""The finance sentiment labels, in a module that imports nothing: `finance-sentiment train` checks a data
file's labels against them before it imports torch."""

FINANCE_LABELS = ("negative", "neutral", "positive")
