"""The recommender's HTTP API, one router per resource."""
