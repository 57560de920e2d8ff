"""One experiment end to end: plan, launch (backends/), live parse, decide, report to the agent."""
