"""Analytics: accuracy, knowledge types over time, the stage funnel, tag usage, prompt rankings."""
