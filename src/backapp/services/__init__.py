"""Business rules: configs, runs, alerts, statistics, retention, scheduling decisions."""
